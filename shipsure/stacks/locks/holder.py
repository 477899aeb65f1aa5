"""Hold a lock for the length of a `with` block: acquire, heartbeat, release.

    with hold(backend, "stacks/network", note=pipeline_url) as held:
        for step in steps:
            held.check()          # raises LockLost if the heartbeat lost the lock
            step()

The heartbeat renews every ttl/3 in a daemon thread, so a holder survives one or two
missed renewals (a slow backend, a network blip) before its lock can go stale. If a renew
finds the lock no longer ours, `held.lost` turns true and the caller decides what to stop.

Between renewals the same thread reads the lock every `check_interval` seconds (default
`CHECK_SECONDS`, or the renew interval when that is shorter) and compares owner and fencing
token: a backend that lost its data and gave the key to another holder is noticed within
that interval, not at the next renewal (which with the default 30-minute TTL is up to 10
minutes away). `held.confirm()` does the same check on demand, before each step.
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
from shipsure.stacks.locks.record import lost_message

__all__ = ["HeldLock", "LockHeld", "default_owner", "hold"]

# acquire() can answer "held" and get() "free" when the holder releases in between;
# try again a few times rather than report a lock nobody holds.
ACQUIRE_ATTEMPTS = 3
# How long to wait for an in-flight renew before releasing anyway (backends time out
# their own calls well before this).
STOP_TIMEOUT_SECONDS = 30.0
MIN_RETRY_SECONDS = 0.05
# How often a holder checks, between renewals, that the backend still has its lock.
CHECK_SECONDS = 2.0


def default_owner() -> str:
    """`host:pid:random`: unique per holder, and tells a human where the holder runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class HeldLock:
    """A lock we hold; the heartbeat thread keeps `info` fresh and sets `lost`."""

    def __init__(
        self,
        backend: LockBackend,
        info: LockInfo,
        ttl: float,
        interval: float,
        clock: Clock,
        check_interval: float | None = None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.ttl = ttl
        self.interval = interval
        self.check_interval = min(
            interval, CHECK_SECONDS if check_interval is None else check_interval
        )
        self.token = info.token
        self.checks = 0
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

    def confirm(self) -> bool:
        """Read the lock now and say whether it is still ours (owner and fencing token).
        A backend that cannot be read does not make the lock lost before it expires."""
        if self.lost:
            return False
        try:
            current = self.backend.get(self.info.key)
        except Exception as exc:
            if self.info.expires_at - self._clock() <= 0:
                self._mark_lost(f"lock {self.info.key!r} expired while it could not be read: {exc}")
            return not self.lost
        self.checks += 1
        if current is None or not current.held_by(self.info.owner, self.token):
            self._mark_lost(lost_message(self.info.key, self.info.owner, current, "gone"))
        return not self.lost

    def _heartbeat(self) -> None:
        delay = self.interval
        next_renewal = time.monotonic() + delay
        while not self._stop.wait(
            max(0.0, min(self.check_interval, next_renewal - time.monotonic()))
        ):
            if time.monotonic() < next_renewal:
                if not self.confirm():
                    return
                continue
            try:
                self.info = self.backend.renew(self.info.key, self.info.owner, self.ttl, self.token)
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
            next_renewal = time.monotonic() + delay

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
    check_interval: float | None = None,
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
    held = HeldLock(
        backend, info, ttl, interval if interval is not None else ttl / 3, clock, check_interval
    )
    held._thread.start()
    try:
        yield held
    except BaseException:
        held._stop_heartbeat()
        with contextlib.suppress(Exception):
            backend.release(key, held.owner, held.token)
        raise
    held._stop_heartbeat()
    backend.release(key, held.owner, held.token)


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
