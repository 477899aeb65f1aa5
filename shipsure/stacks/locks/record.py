"""The lock record every backend stores, and the wording every backend shares.

Redis, etcd and Vault store `{"owner", "acquired_at", "expires_at", "note", "token"}` under the
lock's key; the file backend adds `"key"`, since a directory listing only sees quoted file
names. PostgreSQL keeps the same fields as columns. Decoding raises NotALockRecord, a
ValueError, and each backend turns it into a LockError that says where the stray record is.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

from shipsure.stacks.locks.interface import LockError, LockInfo

NOT_A_RECORD = "not a shipsure lock record"


class NotALockRecord(ValueError):
    """Stored data that is not a lock record shipsure wrote (never guessed to be a lock)."""


def record_fields(info: LockInfo, *, with_key: bool = False) -> dict[str, Any]:
    """The record as a JSON-ready dict (Vault sends it as the secret's data)."""
    fields: dict[str, Any] = {"key": info.key} if with_key else {}
    fields.update(
        owner=info.owner,
        acquired_at=info.acquired_at,
        expires_at=info.expires_at,
        note=info.note,
        token=info.token,
    )
    return fields


def new_token() -> str:
    """A fencing token for one acquisition: unique, never reused."""
    return uuid.uuid4().hex


def encode_record(info: LockInfo, *, with_key: bool = False, indent: int | None = None) -> str:
    return json.dumps(record_fields(info, with_key=with_key), indent=indent)


def info_from_fields(fields: object, key: str | None) -> LockInfo:
    """The LockInfo in a decoded record; `key=None` takes the key from the record itself."""
    if not isinstance(fields, Mapping):
        raise NotALockRecord(NOT_A_RECORD)
    try:
        info = LockInfo(
            key=str(fields["key"]) if key is None else key,
            owner=str(fields["owner"]),
            acquired_at=_time(fields["acquired_at"]),
            expires_at=_time(fields["expires_at"]),
            note=str(fields.get("note", "")),
            token=str(fields.get("token", "")),
        )
    except (KeyError, TypeError, ValueError):
        raise NotALockRecord(NOT_A_RECORD) from None
    return info


def _time(value: object) -> float:
    """A time shipsure wrote: a finite number of seconds. NaN would make a lock that never
    goes stale (every comparison with it is false), infinity one that never expires:
    neither is a record to act on."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    if not math.isfinite(value):
        raise ValueError("not finite")
    return float(value)


def decode_record(raw: bytes | str, key: str | None) -> LockInfo:
    """The LockInfo in a JSON record; NotALockRecord for anything else."""
    try:
        fields = json.loads(raw)
    except ValueError:  # bad JSON or bad UTF-8
        raise NotALockRecord(NOT_A_RECORD) from None
    return info_from_fields(fields, key)


def checked_key(key: str) -> str:
    """The key itself; LockError for a key no backend can store."""
    if not key:
        raise LockError("lock key is empty")
    return key


def lost_message(
    key: str, owner: str, current: LockInfo | None, gone: str = "released or broken"
) -> str:
    """Why a renew found the lock no longer ours, given what the backend holds now.

    `gone` says what removes a record on this backend (where the server owns the TTL,
    expiry does too).
    """
    if current is None:
        return f"lock {key!r} of {owner} is gone ({gone})"
    if current.owner != owner:
        return f"lock {key!r} of {owner} was taken over by {current.owner}"
    return f"lock {key!r} of {owner} expired before it was renewed"
