"""`stacks locks break` as a plan: break exactly the lock the plan showed, journaled.

The plan records who held the lock (owner, since when). Just before breaking, the lock is
read again: gone is already done; held by someone else now (or taken again since) is
refused, so a break never removes a lock nobody looked at. The break itself is the
backend's owner-checked `release`, which never removes another holder's lock.
"""

from __future__ import annotations

import time

from shipsure.plan import Action, AlreadyDone, Plan, Precondition, Ready, Refused
from shipsure.stacks.locks.interface import LockBackend, LockError, LockInfo

WRITER = "locks-break"
BREAK_LOCK = "break-lock"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def describe(info: LockInfo) -> str:
    text = f"lock {info.key!r} held by {info.owner} since {_utc(info.acquired_at)}"
    return f"{text} ({info.note})" if info.note else text


def plan_break(key: str, info: LockInfo | None) -> Plan:
    """The plan to break the lock `key`, of which `info` is what the backend holds now."""
    if info is None:
        return Plan(WRITER, [], [f"no lock {key!r} is held; nothing to break"])
    facts = {"owner": info.owner, "acquired_at": info.acquired_at, "note": info.note}
    return Plan(WRITER, [Action(BREAK_LOCK, key, describe(info), facts)])


class BreakWriter:
    """`shipsure.plan.Writer` for lock breaks on one backend."""

    def __init__(self, backend: LockBackend) -> None:
        self.backend = backend

    def check(self, action: Action) -> Precondition:
        info = self.backend.get(action.target)
        if info is None:
            return AlreadyDone("no lock held")
        planned = (action.facts.get("owner"), action.facts.get("acquired_at"))
        if (info.owner, info.acquired_at) != planned:
            return Refused(f"the lock changed hands since the plan: now {describe(info)}")
        return Ready()

    def run(self, action: Action) -> None:
        if not self.backend.release(action.target, str(action.facts["owner"])):
            raise LockError(f"lock {action.target!r} changed hands just now; not broken")
