"""Locks in Redis: `SET key record NX PX ttl`, so the server owns the TTL.

A stale lock needs no takeover logic: Redis drops the key when its TTL runs out and the
next `SET NX` wins. Renew and release must only touch our own lock, so they run as Lua
scripts that compare the owner and the fencing token and act in one atomic step on the
server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from shipsure.stacks.locks.interface import LockError, LockInfo, LockLost, LockUnreadable
from shipsure.stacks.locks.record import (
    NOT_A_RECORD,
    NotALockRecord,
    checked_key,
    decode_record,
    encode_record,
    new_token,
)

SOCKET_TIMEOUT_SECONDS = 5.0
# The scripts answer a value that is not a record with NOT_A_RECORD, matched in _errors.

# KEYS[1] lock key; ARGV[1] owner, ARGV[2] new TTL in ms, ARGV[3] new expires_at,
# ARGV[4] fencing token ("" matches any).
RENEW_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, record = pcall(cjson.decode, raw)
if not ok or type(record) ~= 'table' then return redis.error_reply('not a shipsure lock record') end
if record['owner'] ~= ARGV[1] then return false end
if ARGV[4] ~= '' and record['token'] ~= ARGV[4] then return false end
record['expires_at'] = tonumber(ARGV[3])
local updated = cjson.encode(record)
redis.call('SET', KEYS[1], updated, 'PX', ARGV[2])
return updated
"""

# KEYS[1] lock key; ARGV[1] owner, ARGV[2] fencing token ("" matches any).
RELEASE_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, record = pcall(cjson.decode, raw)
if not ok or type(record) ~= 'table' then return redis.error_reply('not a shipsure lock record') end
if record['owner'] ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and record['token'] ~= ARGV[2] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisLockBackend:
    """Keys `<prefix><key>` holding a JSON lock record, expiring server-side."""

    def __init__(self, client: Any, prefix: str, where: str) -> None:
        self.client = client
        self.prefix = prefix
        self.where = where
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisLockBackend:
        try:
            import redis
        except ImportError:
            raise LockError(
                "the redis lock backend needs the `redis` package: pip install 'shipsure[locks]'"
            ) from None
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            )
        except ValueError:
            raise  # a malformed URL: the caller names it (masked) as a usage error
        kwargs = client.connection_pool.connection_kwargs
        where = f"redis at {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return cls(client, prefix, where)

    def __repr__(self) -> str:
        return f"RedisLockBackend({self.where}, prefix={self.prefix!r})"

    # -- the protocol -------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        now = time.time()
        info = LockInfo(key, owner, now, now + ttl, note, new_token())
        with self._errors("acquire", key):
            created = self.client.set(self._name(key), encode_record(info), nx=True, px=_ms(ttl))
        return info if created else None

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        expires_at = time.time() + ttl
        with self._errors("renew", key):
            updated = self._renew(keys=[self._name(key)], args=[owner, _ms(ttl), expires_at, token])
        if not updated:
            raise LockLost(f"lock {key!r} of {owner} is gone or taken over ({self.where})")
        return self._decode(key, updated)

    def release(self, key: str, owner: str, token: str = "") -> bool:
        with self._errors("release", key):
            return bool(self._release(keys=[self._name(key)], args=[owner, token]))

    def get(self, key: str) -> LockInfo | None:
        with self._errors("read", key):
            pipe = self.client.pipeline(transaction=True)
            pipe.get(self._name(key))
            pipe.pttl(self._name(key))
            raw, pttl = pipe.execute()
        if raw is None:
            return None
        info = self._decode(key, raw)
        if pttl > 0:
            # The server's countdown is the truth; the record's time is the client's.
            info = LockInfo(
                info.key,
                info.owner,
                info.acquired_at,
                time.time() + pttl / 1000,
                info.note,
                info.token,
            )
        return info

    def list(self) -> list[LockInfo | LockUnreadable]:
        pattern = _glob_escape(self.prefix) + "*"
        with self._errors("list", self.prefix + "*"):
            names = sorted(self.client.scan_iter(match=pattern, count=500))
        found: list[LockInfo | LockUnreadable] = []
        for name in names:
            try:
                info = self.get(name.decode("utf-8", "replace")[len(self.prefix) :])
            except LockUnreadable as exc:
                found.append(exc)
                continue
            if info is not None:
                found.append(info)
        return found

    def force_break(self, key: str) -> bool:
        with self._errors("break", key):
            return bool(self.client.delete(self._name(key)))

    def close(self) -> None:
        self.client.close()

    # -- helpers -------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + checked_key(key)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn redis-py's exceptions into one-line LockErrors."""
        import redis

        try:
            yield
        except redis.RedisError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if NOT_A_RECORD in reason:
                reason = f"key {self._name(key)!r} is {NOT_A_RECORD}"
            raise LockError(f"cannot {action} lock {key!r} in {self.where}: {reason}") from None

    def _decode(self, key: str, raw: bytes | str) -> LockInfo:
        try:
            return decode_record(raw, key)
        except NotALockRecord:
            raise LockUnreadable(
                f"{self.where} key {self._name(key)!r} is {NOT_A_RECORD}", key
            ) from None


def _ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
