"""Locks as JSON files in one directory, for runners that share a machine.

Every change happens while holding an exclusive `flock` on a guard file in the directory,
so a read-decide-write (acquire, takeover, renew, release) is one step for every process
and thread on the machine: exactly one contender wins. Lock files are written to a temp
file and renamed into place, so a reader that does not take the guard (get, list) sees
either the old record or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from shipsure import fileio
from shipsure.stacks.locks.interface import (
    SYSTEM_CLOCK,
    Clock,
    LockError,
    LockInfo,
    LockLost,
    LockUnreadable,
)
from shipsure.stacks.locks.record import (
    NOT_A_RECORD,
    NotALockRecord,
    checked_key,
    decode_record,
    encode_record,
    lost_message,
    new_token,
)

GUARD_NAME = ".shipsure-locks.guard"
SUFFIX = ".lock.json"
# A guard is held for a few file operations only; waiting longer than this means a
# process is stuck holding it, and hanging behind it would be worse than failing.
GUARD_TIMEOUT_SECONDS = 10.0
# Keys become file names; stay well inside the usual 255-byte name limit.
MAX_NAME_BYTES = 200
# A record is a few hundred bytes (a long note included); anything far larger is not one.
MAX_RECORD_BYTES = 64 * 1024


class FileLockBackend:
    """One `<quoted key>.lock.json` per lock in `directory` (created on first use)."""

    def __init__(self, directory: Path | str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.directory = Path(directory)
        self.clock = clock

    def __repr__(self) -> str:
        return f"FileLockBackend({str(self.directory)!r})"

    # -- the protocol -------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        path = self._path(key)
        with self._guard(create=True):
            now = self.clock()
            current = self._read(path)
            if current is not None and not current.is_stale(now):
                return None
            info = LockInfo(key, owner, now, now + ttl, note, new_token())
            self._write(path, info)
            return info

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        path = self._path(key)
        with self._guard(create=True):
            now = self.clock()
            current = self._read(path)
            if current is None or not current.held_by(owner, token) or current.is_stale(now):
                raise LockLost(lost_message(key, owner, current))
            info = LockInfo(key, owner, current.acquired_at, now + ttl, current.note, current.token)
            self._write(path, info)
            return info

    def release(self, key: str, owner: str, token: str = "") -> bool:
        path = self._path(key)
        with self._guard(create=True):
            current = self._read(path)
            if current is None or not current.held_by(owner, token):
                return False
            self._unlink(path)
            return True

    def get(self, key: str) -> LockInfo | None:
        return self._read(self._path(key))

    def list(self) -> list[LockInfo | LockUnreadable]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LockError(f"cannot list lock directory {self.directory}: {exc}") from None
        found: list[LockInfo | LockUnreadable] = []
        for name in names:
            if name.endswith(SUFFIX) and not name.startswith("."):
                try:
                    info = self._read(self.directory / name)
                except LockUnreadable as exc:
                    found.append(exc)
                    continue
                if info is not None:
                    found.append(info)
        return found

    def force_break(self, key: str) -> bool:
        path = self._path(key)
        with self._guard(create=True):
            return self._unlink(path)

    def break_unreadable(self, key: str) -> bool:
        """Remove the file of `key` only if it is still not a lock record: under the guard,
        so a lock taken meanwhile (a record renamed into place) is never removed."""
        path = self._path(key)
        with self._guard(create=True):
            try:
                self._read(path)
            except LockUnreadable:
                return self._unlink(path)
            return False

    def close(self) -> None:
        """Nothing stays open between calls."""

    # -- files ---------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        name = quote(checked_key(key), safe="") + SUFFIX
        if len(name.encode()) > MAX_NAME_BYTES:
            raise LockError(f"lock key {key[:40]!r}... is too long for a file name")
        return self.directory / name

    @contextlib.contextmanager
    def _guard(self, create: bool) -> Iterator[None]:
        if create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LockError(f"cannot create lock directory {self.directory}: {exc}") from None
        guard = self.directory / GUARD_NAME
        try:
            fd = os.open(guard, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockError(f"cannot open lock guard {guard}: {exc}") from None
        try:
            _flock_with_timeout(fd, guard)
            yield
        finally:
            # Closing the descriptor drops the flock too.
            os.close(fd)

    def _read(self, path: Path) -> LockInfo | None:
        try:
            # A FIFO or a link to /dev/zero in the lock folder must not hang the runner or
            # fill its memory: only a regular file, and never more than a record can be.
            raw = fileio.read_regular(path, MAX_RECORD_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.strerror != "not a regular file":
                raise LockError(f"cannot read lock file {path}: {exc}") from None
            raw = b""  # no record
        try:
            if len(raw) > MAX_RECORD_BYTES:
                raise NotALockRecord(NOT_A_RECORD)
            # The record names its key: list() sees only quoted file names.
            return decode_record(raw, key=None)
        except NotALockRecord:
            # Files are only ever renamed into place whole, so this one was written by
            # something else: refuse to guess whether it is a live lock.
            key = unquote(path.name.removesuffix(SUFFIX))
            raise LockUnreadable(
                f"lock file {path} is {NOT_A_RECORD}; inspect it, then remove it "
                f"with `shipsure stacks locks break {shlex.quote(key)} --apply`",
                key,
            ) from None

    def _write(self, path: Path, info: LockInfo) -> None:
        body = encode_record(info, with_key=True, indent=2).encode()
        try:
            fileio.write_atomic(path, body + b"\n")
        except OSError as exc:
            raise LockError(f"cannot write lock file {path}: {exc}") from None

    def _unlink(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LockError(f"cannot remove lock file {path}: {exc}") from None
        return True


def _flock_with_timeout(fd: int, guard: Path) -> None:
    # A blocking flock cannot time out; poll a non-blocking one with a short sleep instead.
    deadline = time.monotonic() + GUARD_TIMEOUT_SECONDS
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockError(
                    f"lock guard {guard} stayed busy for {GUARD_TIMEOUT_SECONDS:.0f}s"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        except OSError as exc:
            raise LockError(f"cannot lock guard {guard}: {exc}") from None
