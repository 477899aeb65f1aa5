"""Locks in PostgreSQL: a lease row per key, written under a transaction advisory lock.

Why not just `pg_try_advisory_lock(key)` for as long as the stack runs? A session-level
advisory lock lives exactly as long as the connection that took it. When a CI runner is
killed, its TCP connection can linger half-open on the server for the kernel's keepalive
time (hours by default) or sit behind a pooler that never closes it, and the stack stays
locked with nobody to see who holds it or until when. So the TTL is explicit: a row says
who holds the lock and until when, the holder renews it, and anyone may take over a row
whose `expires_at` has passed.

The advisory lock is only taken per transaction (`pg_try_advisory_xact_lock`), to turn
"look at the row, decide, write" into one step per key: when two contenders race for a
stale row, exactly one gets the advisory lock and the conditional upsert; the other sees
the lock busy and reports it held. The upsert's own `WHERE expires_at <= now` guard keeps
that true even without the advisory lock.

Each row carries the fencing token of its acquisition (`token`); renew and release act only
on the row that still holds ours. Tables created before tokens existed get the column on
first use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from shipsure.stacks.locks.interface import (
    SYSTEM_CLOCK,
    Clock,
    LockError,
    LockInfo,
    LockLost,
    LockUnreadable,
)
from shipsure.stacks.locks.record import checked_key, new_token

TABLE = "shipsure_locks"
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 10_000

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key         text PRIMARY KEY,
    owner       text NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    note        text NOT NULL DEFAULT '',
    token       text NOT NULL DEFAULT ''
)"""
ADD_TOKEN = f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS token text NOT NULL DEFAULT ''"

# Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog; serialise it.
SCHEMA_LOCK_ID = 0x5348_4950  # "SHIP"

ACQUIRE = f"""
INSERT INTO {TABLE} AS held (key, owner, acquired_at, expires_at, note, token)
VALUES (%(key)s, %(owner)s, %(now)s, %(expires_at)s, %(note)s, %(token)s)
ON CONFLICT (key) DO UPDATE
    SET owner = excluded.owner, acquired_at = excluded.acquired_at,
        expires_at = excluded.expires_at, note = excluded.note, token = excluded.token
    WHERE held.expires_at <= %(now)s
RETURNING key, owner, acquired_at, expires_at, note, token"""

RENEW = f"""
UPDATE {TABLE} SET expires_at = %(expires_at)s
WHERE key = %(key)s AND owner = %(owner)s AND expires_at > %(now)s
    AND (%(token)s = '' OR token = %(token)s)
RETURNING key, owner, acquired_at, expires_at, note, token"""

COLUMNS = "key, owner, acquired_at, expires_at, note, token"


class PostgresLockBackend:
    """Rows `<prefix><key>` in table shipsure_locks (created on first acquire)."""

    def __init__(self, conninfo: str, prefix: str, clock: Clock = SYSTEM_CLOCK) -> None:
        try:
            import psycopg
        except ImportError:
            raise LockError(
                "the postgresql lock backend needs psycopg 3: pip install 'shipsure[locks]'"
            ) from None
        self._psycopg = psycopg
        self.conninfo = conninfo
        self.prefix = prefix
        self.clock = clock
        parts = urlsplit(conninfo)
        self.where = f"postgresql at {parts.hostname or 'localhost'}:{parts.port or 5432}"
        self._conn: Any = None
        self._schema_ready = False
        # One connection, one transaction at a time: the heartbeat thread shares it.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresLockBackend({self.where}, prefix={self.prefix!r})"

    # -- the protocol -------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        name = self._name(key)
        now = self.clock()
        params = {
            "key": name,
            "owner": owner,
            "now": _ts(now),
            "expires_at": _ts(now + ttl),
            "note": note,
            "token": new_token(),
        }
        with self._transaction("acquire", key, create=True) as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (name,))
            if not cur.fetchone()[0]:
                return None  # another contender is deciding this very key right now
            cur.execute(ACQUIRE, params)
            row = cur.fetchone()
        return self._info(row) if row is not None else None

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        now = self.clock()
        params = {
            "key": self._name(key),
            "owner": owner,
            "token": token,
            "now": _ts(now),
            "expires_at": _ts(now + ttl),
        }
        with self._transaction("renew", key) as cur:
            row = None
            if self._table_exists(cur):
                cur.execute(RENEW, params)
                row = cur.fetchone()
        if row is None:
            raise LockLost(f"lock {key!r} of {owner} expired, was taken over or broken")
        return self._info(row)

    def release(self, key: str, owner: str, token: str = "") -> bool:
        with self._transaction("release", key) as cur:
            if not self._table_exists(cur):
                return False
            cur.execute(
                f"DELETE FROM {TABLE} WHERE key = %s AND owner = %s"
                " AND (%s = '' OR token = %s) RETURNING key",
                (self._name(key), owner, token, token),
            )
            return cur.fetchone() is not None

    def get(self, key: str) -> LockInfo | None:
        with self._transaction("read", key) as cur:
            if not self._table_exists(cur):
                return None
            cur.execute(f"SELECT {COLUMNS} FROM {TABLE} WHERE key = %s", (self._name(key),))
            row = cur.fetchone()
        return self._info(row) if row is not None else None

    def list(self) -> list[LockInfo | LockUnreadable]:
        with self._transaction("list", self.prefix + "*") as cur:
            if not self._table_exists(cur):
                return []
            cur.execute(
                f"SELECT {COLUMNS} FROM {TABLE} WHERE starts_with(key, %s) ORDER BY key",
                (self.prefix,),
            )
            rows = cur.fetchall()
        return [self._info(row) for row in rows]

    def force_break(self, key: str) -> bool:
        with self._transaction("break", key) as cur:
            if not self._table_exists(cur):
                return False
            cur.execute(f"DELETE FROM {TABLE} WHERE key = %s RETURNING key", (self._name(key),))
            return cur.fetchone() is not None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- helpers -------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + checked_key(key)

    def _info(self, row: tuple[Any, ...]) -> LockInfo:
        key, owner, acquired_at, expires_at, note, token = row
        return LockInfo(
            key[len(self.prefix) :],
            owner,
            acquired_at.timestamp(),
            expires_at.timestamp(),
            note,
            token,
        )

    def _table_exists(self, cur: Any) -> bool:
        if self._schema_ready:
            return True
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
        if not cur.fetchone()[0]:
            return False
        # A table from before fencing tokens: add the column once.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        cur.execute(ADD_TOKEN)
        self._schema_ready = True
        return True

    @contextmanager
    def _transaction(self, action: str, key: str, create: bool = False) -> Iterator[Any]:
        psycopg = self._psycopg
        with self._lock:
            try:
                conn = self._connection()
                if create and not self._schema_ready:
                    with conn.transaction(), conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
                        cur.execute(CREATE_TABLE)
                        cur.execute(ADD_TOKEN)
                    self._schema_ready = True
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn = None  # reconnect on the next call
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise LockError(f"cannot {action} lock {key!r} in {self.where}: {reason}") from None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._psycopg.connect(
                self.conninfo,
                autocommit=True,  # transactions are explicit: conn.transaction()
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
        return self._conn


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
