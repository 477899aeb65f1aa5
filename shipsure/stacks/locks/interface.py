"""The lock seam: one protocol, the records that cross it, and its errors.

A lock is advisory and per stack. It has a TTL: a holder must renew it (heartbeat) before
it expires; a lock whose holder stopped renewing is stale after its TTL and may be taken
over, and exactly one contender wins a takeover.

Every acquisition gets a fencing token, a random value stored in the lock's record: renew and
release name it, and act only while the stored record still carries it. A backend that lost
its data (a Redis restarted empty) and handed the key to someone else therefore fails the
old holder's next renew, release or check, instead of extending or deleting the new lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shipsure.errors import ShipsureError

DEFAULT_TTL_SECONDS = 30 * 60

# Where network backends keep their keys unless the backend URL says otherwise.
DEFAULT_KEY_PREFIX = "shipsure/locks/"

# Seconds since the epoch. Backends whose server does not own the TTL (file, PostgreSQL,
# Vault) take one so tests can step time instead of sleeping through a TTL.
Clock = Callable[[], float]
SYSTEM_CLOCK: Clock = time.time


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock and until when (seconds since the epoch, UTC)."""

    key: str
    owner: str  # unique per holder, e.g. "host:pid:uuid4"
    acquired_at: float
    expires_at: float
    # Free-form description of the holder: CI pipeline URL, commit, command.
    note: str = ""
    # The fencing token of this acquisition ("" in records written before tokens existed).
    token: str = ""

    def held_by(self, owner: str, token: str) -> bool:
        """This record is the acquisition `owner` made with `token` ("" matches any)."""
        return self.owner == owner and (not token or self.token == token)

    def is_stale(self, now: float) -> bool:
        return now >= self.expires_at


class LockError(ShipsureError):
    """The backend failed (unreachable, refused): could not lock, not "lock held"."""


class LockLost(LockError):
    """A renew or release found the lock no longer ours (expired and taken over)."""


class LockUnreadable(LockError):
    """What the backend stores under a key is not a shipsure lock record (written by
    something else, or damaged): nobody can tell whether it is a live lock."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class LockHeld(ShipsureError):
    """Someone else holds a live lock; `info` says who, since when and until when."""

    def __init__(self, info: LockInfo, now: float | None = None) -> None:
        self.info = info
        left = info.expires_at - (time.time() if now is None else now)
        note = f" ({info.note})" if info.note else ""
        super().__init__(
            f"lock {info.key!r} is held by {info.owner}{note}; "
            f"it expires in {max(left, 0):.0f}s unless its holder renews it"
        )


class LockBackend(Protocol):
    """Every backend passes the same contract tests (tests/stacks/locks)."""

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        """Take the lock if free or stale; None if someone else holds a live lock."""
        ...

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        """Extend our lock; raises LockLost if it is no longer ours (owner and, when given,
        the fencing token of our acquisition must still match)."""
        ...

    def release(self, key: str, owner: str, token: str = "") -> bool:
        """Give our lock back; False if it was not ours (never removes another's)."""
        ...

    def get(self, key: str) -> LockInfo | None: ...

    def list(self) -> list[LockInfo | LockUnreadable]:
        """Every lock under the backend's prefix; a key holding no lock record is listed
        as its LockUnreadable, so one damaged key does not hide the others."""
        ...

    def force_break(self, key: str) -> bool:
        """Remove a lock whatever its owner (`shipsure stacks locks break`)."""
        ...

    def close(self) -> None: ...
