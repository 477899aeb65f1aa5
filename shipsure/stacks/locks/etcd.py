"""Locks in etcd v3 through its HTTP/JSON gateway: the lease owns the TTL.

acquire = grant a lease, then one transaction "if the key was never created, put our
record attached to the lease". A holder that stops renewing loses its lease and etcd
deletes the key, so takeover is just the next acquire. Renew keeps our own lease alive
(lease IDs are unique, so a keepalive can never extend another holder's lock); release
deletes the key only if it still carries our lease.

The gateway speaks JSON with base64 keys and values and int64 numbers as strings. It
avoids the python etcd3 client, which lags behind current protobuf and grpc releases.
"""

from __future__ import annotations

import base64
import contextlib
import math
import time
from typing import Any

import httpx

from shipsure.stacks.locks.interface import LockError, LockInfo, LockLost, LockUnreadable
from shipsure.stacks.locks.record import (
    NOT_A_RECORD,
    checked_key,
    decode_record,
    encode_record,
    lost_message,
    new_token,
)

TIMEOUT_SECONDS = 5.0


class EtcdLockBackend:
    """Keys `<prefix><key>` whose value is the JSON lock record, each on its own lease."""

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.prefix = prefix
        self.http = httpx.Client(
            base_url=self.endpoint, timeout=TIMEOUT_SECONDS, transport=transport
        )

    def __repr__(self) -> str:
        return f"EtcdLockBackend({self.endpoint!r}, prefix={self.prefix!r})"

    # -- the protocol -------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        name = self._name(key)
        # etcd leases count whole seconds; round up so a lock never ends before its TTL.
        lease_ttl = max(1, math.ceil(ttl))
        granted = self._call("/v3/lease/grant", {"TTL": lease_ttl}, "acquire", key)
        lease = str(granted.get("ID", ""))
        if not lease:
            raise LockError(f"etcd at {self.endpoint} granted no lease for {key!r}")
        now = time.time()
        info = LockInfo(key, owner, now, now + lease_ttl, note, new_token())
        value = _b64(encode_record(info).encode())
        txn = {
            "compare": [
                {"key": _b64(name), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}
            ],
            "success": [{"request_put": {"key": _b64(name), "value": value, "lease": lease}}],
        }
        try:
            answer = self._call("/v3/kv/txn", txn, "acquire", key)
        except LockError:
            self._revoke(lease)
            raise
        if answer.get("succeeded"):
            return info
        self._revoke(lease)
        return None

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        kv = self._range_one(key, "renew")
        current = self._decode(key, kv) if kv is not None else None
        if kv is None or current is None or not current.held_by(owner, token):
            # A deleted key may have expired too: etcd drops it with its lease.
            raise LockLost(lost_message(key, owner, current, gone="expired, released or broken"))
        # The keepalive renews for the TTL granted at acquire; `ttl` cannot change it.
        answer = self._call("/v3/lease/keepalive", {"ID": kv.get("lease", "0")}, "renew", key)
        left = int(answer.get("result", {}).get("TTL", 0) or 0)
        if left <= 0:
            raise LockLost(f"lock {key!r} of {owner} expired before it was renewed")
        return LockInfo(
            key, owner, current.acquired_at, time.time() + left, current.note, current.token
        )

    def release(self, key: str, owner: str, token: str = "") -> bool:
        kv = self._range_one(key, "release")
        if kv is None:
            return False
        current = self._decode(key, kv)
        if not current.held_by(owner, token):
            return False
        lease = str(kv.get("lease", "0"))
        # Delete only the record we just read; a takeover in between changes create_revision.
        txn = {
            "compare": [
                {
                    "key": _b64(self._name(key)),
                    "result": "EQUAL",
                    "target": "CREATE",
                    "create_revision": str(kv.get("create_revision", "0")),
                }
            ],
            "success": [{"request_delete_range": {"key": _b64(self._name(key))}}],
        }
        answer = self._call("/v3/kv/txn", txn, "release", key)
        self._revoke(lease)
        return bool(answer.get("succeeded"))

    def get(self, key: str) -> LockInfo | None:
        kv = self._range_one(key, "read")
        return self._with_lease_time(key, kv) if kv is not None else None

    def list(self) -> list[LockInfo | LockUnreadable]:
        start = self.prefix.encode()
        body = {"key": _b64(start), "range_end": _b64(_prefix_end(start))}
        answer = self._call("/v3/kv/range", body, "list", self.prefix + "*")
        found: list[LockInfo | LockUnreadable] = []
        for kv in answer.get("kvs", []):
            key = _unb64(kv.get("key", "")).decode("utf-8", "replace")[len(self.prefix) :]
            try:
                found.append(self._with_lease_time(key, kv))
            except LockUnreadable as exc:
                found.append(exc)
        return sorted(found, key=lambda info: info.key)

    def force_break(self, key: str) -> bool:
        kv = self._range_one(key, "break")
        if kv is None:
            return False
        body = {"key": _b64(self._name(key))}
        answer = self._call("/v3/kv/deleterange", body, "break", key)
        self._revoke(str(kv.get("lease", "0")))
        return int(answer.get("deleted", 0) or 0) > 0

    def close(self) -> None:
        self.http.close()

    # -- helpers -------------------------------------------------------------------------

    def _name(self, key: str) -> bytes:
        return (self.prefix + checked_key(key)).encode()

    def _call(self, path: str, body: dict[str, Any], action: str, key: str) -> dict[str, Any]:
        where = f"cannot {action} lock {key!r} in etcd at {self.endpoint}"
        try:
            response = self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise LockError(f"{where}: {type(exc).__name__}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise LockError(f"{where}: HTTP {response.status_code}, not an etcd JSON answer")
        if response.status_code != 200 or "error" in answer:
            message = answer.get("message") or answer.get("error") or response.reason_phrase
            raise LockError(f"{where}: HTTP {response.status_code}: {message}")
        return answer

    def _range_one(self, key: str, action: str) -> dict[str, Any] | None:
        answer = self._call("/v3/kv/range", {"key": _b64(self._name(key))}, action, key)
        kvs = answer.get("kvs") or []
        return dict(kvs[0]) if kvs else None

    def _with_lease_time(self, key: str, kv: dict[str, Any]) -> LockInfo:
        info = self._decode(key, kv)
        lease = str(kv.get("lease", "0"))
        if lease == "0":
            return info
        # The lease's countdown is the truth; the record's expiry was the acquirer's guess.
        answer = self._call("/v3/lease/timetolive", {"ID": lease}, "read", key)
        left = int(answer.get("TTL", 0) or 0)
        return LockInfo(
            info.key,
            info.owner,
            info.acquired_at,
            time.time() + max(left, 0),
            info.note,
            info.token,
        )

    def _revoke(self, lease: str) -> None:
        # Best effort: an unrevoked lease only lingers until its own TTL.
        if lease and lease != "0":
            with contextlib.suppress(httpx.HTTPError):
                self.http.post("/v3/lease/revoke", json={"ID": lease})

    def _decode(self, key: str, kv: dict[str, Any]) -> LockInfo:
        try:
            return decode_record(_unb64(kv.get("value", "")), key)
        except (ValueError, TypeError):  # NotALockRecord, or a value that is not base64
            raise LockUnreadable(
                f"etcd key {(self.prefix + key)!r} at {self.endpoint} is {NOT_A_RECORD}", key
            ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix": the prefix plus one."""
    for index in range(len(prefix) - 1, -1, -1):
        if prefix[index] < 0xFF:
            return prefix[:index] + bytes([prefix[index] + 1])
    return b"\0"  # all 0xff (or empty): to the end of the keyspace
