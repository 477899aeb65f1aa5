"""Hold a lock for the length of a `with` block: acquire, heartbeat, release.

    with hold(backend, "stacks/network", note=pipeline_url) as held:
        for step in steps:
            held.check()          # raises LockLost if the heartbeat lost the lock
            step()

The heartbeat renews every ttl/3 in a daemon thread, so a holder survives one or two
missed renewals (a slow backend, a network blip) before its lock can go stale. If a renew
finds the lock no longer ours, `held.lost` turns true and the caller decides what to stop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from shipsure.stacks.locks.interface import (
    DEFAULT_TTL_SECONDS,
    Clock,
    LockBackend,
    LockError,
    LockHeld,
    LockInfo,
    LockLost,
)

__all__ = ["HeldLock", "LockHeld", "default_owner", "hold"]

# acquire() can answer "held" and get() "free" when the holder releases in between;
# try again a few times rather than report a lock nobody holds.
ACQUIRE_ATTEMPTS = 3
# How long to wait for an in-flight renew before releasing anyway (backends time out
# their own calls well before this).
STOP_TIMEOUT_SECONDS = 30.0
MIN_RETRY_SECONDS = 0.05


def default_owner() -> str:
    """`host:pid:random`: unique per holder, and tells a human where the holder runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class HeldLock:
    """A lock we hold; the heartbeat thread keeps `info` fresh and sets `lost`."""

    def __init__(
        self, backend: LockBackend, info: LockInfo, ttl: float, interval: float, clock: Clock
    ) -> None:
        self.backend = backend
        self.info = info
        self.ttl = ttl
        self.interval = interval
        self.lost_event = threading.Event()
        self.lost_reason = ""
        self.renewals = 0
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"shipsure-lock-heartbeat:{info.key}", daemon=True
        )

    @property
    def key(self) -> str:
        return self.info.key

    @property
    def owner(self) -> str:
        return self.info.owner

    @property
    def lost(self) -> bool:
        """True once a renew found the lock expired, taken over or broken."""
        return self.lost_event.is_set()

    def check(self) -> None:
        """Raise LockLost if the lock is no longer ours; call it between steps."""
        if self.lost:
            raise LockLost(self.lost_reason)

    def _heartbeat(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            try:
                self.info = self.backend.renew(self.info.key, self.info.owner, self.ttl)
                self.renewals += 1
                delay = self.interval
            except LockLost as exc:
                self._mark_lost(str(exc))
                return
            except Exception as exc:  # any failure to renew is worth retrying until expiry
                left = self.info.expires_at - self._clock()
                if left <= 0:
                    self._mark_lost(
                        f"lock {self.info.key!r} expired while renewing kept failing: {exc}"
                    )
                    return
                # Retry sooner than the normal interval, but never hammer a sick backend.
                delay = max(MIN_RETRY_SECONDS, min(self.interval, left) / 4)

    def _mark_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self.lost_event.set()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def hold(
    backend: LockBackend,
    key: str,
    owner: str | None = None,
    ttl: float = DEFAULT_TTL_SECONDS,
    note: str = "",
    *,
    interval: float | None = None,
    wait: float = 0.0,
    poll: float = 2.0,
) -> Iterator[HeldLock]:
    """Acquire `key`, renew it every `interval` (default ttl/3), release it on exit.

    Raises LockHeld (with the holder's LockInfo) when someone else holds a live lock and
    `wait` seconds of polling every `poll` seconds did not free it. Release happens on
    every exit, exceptions and KeyboardInterrupt included; a release that fails while an
    exception is already on its way out is dropped in favour of that exception (the lock
    then expires after its TTL).
    """
    if ttl <= 0:
        raise LockError(f"lock TTL must be positive, got {ttl}")
    clock: Clock = getattr(backend, "clock", time.time)
    info = _acquire(backend, key, owner or default_owner(), ttl, note, wait, poll)
    held = HeldLock(backend, info, ttl, interval if interval is not None else ttl / 3, clock)
    held._thread.start()
    try:
        yield held
    except BaseException:
        held._stop_heartbeat()
        with contextlib.suppress(Exception):
            backend.release(key, held.owner)
        raise
    held._stop_heartbeat()
    backend.release(key, held.owner)


def _acquire(
    backend: LockBackend, key: str, owner: str, ttl: float, note: str, wait: float, poll: float
) -> LockInfo:
    deadline = time.monotonic() + wait
    while True:
        holder = None
        for _ in range(ACQUIRE_ATTEMPTS):
            info = backend.acquire(key, owner, ttl, note)
            if info is not None:
                return info
            holder = backend.get(key)
            if holder is not None:
                break
        left = deadline - time.monotonic()
        if left <= 0:
            if holder is None:
                raise LockError(f"lock {key!r} stayed contended; try again")
            raise LockHeld(holder, now=getattr(backend, "clock", time.time)())
        time.sleep(min(poll, left))
