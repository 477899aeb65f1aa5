"""`stacks locks break` as a plan: break exactly the lock the plan showed, journaled.

The plan records who held the lock (owner, since when). Just before breaking, the lock is
read again: gone is already done; held by someone else now (or taken again since) is
refused, so a break never removes a lock nobody looked at. The break itself is the
backend's owner-checked `release`, which never removes another holder's lock.

A key whose stored value is not a lock record (`LockUnreadable`) is broken only on a
backend that can remove it while checking it is still unreadable (`break_unreadable`:
files); elsewhere the plan says to remove it with the backend's own tools.
"""

from __future__ import annotations

import time

from shipsure.plan import Action, AlreadyDone, Plan, Precondition, Ready, Refused
from shipsure.stacks.locks.interface import LockBackend, LockError, LockInfo, LockUnreadable

WRITER = "locks-break"
BREAK_LOCK = "break-lock"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def describe(info: LockInfo) -> str:
    text = f"lock {info.key!r} held by {info.owner} since {_utc(info.acquired_at)}"
    return f"{text} ({info.note})" if info.note else text


def plan_break(key: str, info: LockInfo | LockUnreadable | None) -> Plan:
    """The plan to break the lock `key`, of which `info` is what the backend holds now
    (or the error saying it holds something that is no lock record)."""
    if info is None:
        return Plan(WRITER, [], [f"no lock {key!r} is held; nothing to break"])
    if isinstance(info, LockUnreadable):
        because = f"unreadable lock {key!r}: {info}"
        return Plan(WRITER, [Action(BREAK_LOCK, key, because, {"unreadable": True})])
    facts = {"owner": info.owner, "acquired_at": info.acquired_at, "note": info.note}
    return Plan(WRITER, [Action(BREAK_LOCK, key, describe(info), facts)])


class BreakWriter:
    """`shipsure.plan.Writer` for lock breaks on one backend."""

    def __init__(self, backend: LockBackend) -> None:
        self.backend = backend

    def check(self, action: Action) -> Precondition:
        try:
            info = self.backend.get(action.target)
        except LockUnreadable:
            if not action.facts.get("unreadable"):
                return Refused("the lock record became unreadable since the plan")
            if not hasattr(self.backend, "break_unreadable"):
                return Refused("this backend cannot remove it safely: use its own tools")
            return Ready()
        if info is None:
            return AlreadyDone("no lock held")
        if action.facts.get("unreadable"):
            return Refused(f"a lock was taken since the plan: now {describe(info)}")
        planned = (action.facts.get("owner"), action.facts.get("acquired_at"))
        if (info.owner, info.acquired_at) != planned:
            return Refused(f"the lock changed hands since the plan: now {describe(info)}")
        return Ready()

    def run(self, action: Action) -> None:
        if action.facts.get("unreadable"):
            if not self.backend.break_unreadable(action.target):  # type: ignore[attr-defined]
                raise LockError(f"lock {action.target!r} changed just now; not broken")
            return
        if not self.backend.release(action.target, str(action.facts["owner"])):
            raise LockError(f"lock {action.target!r} changed hands just now; not broken")
