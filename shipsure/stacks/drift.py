"""Drift: plan every (or each selected) stack and alert only when a status changes.

Statuses: `clean` (plan exit 0), `drifted` (exit 2), `error` (anything else), `skipped`
(the stack's lock is held by someone else: it is not planned and its stored status is
kept). The state file keeps each stack's last status between runs; an alert fires on a
transition only:

* `drifted`  — to drifted from clean, error or never seen;
* `resolved` — to clean from drifted or error;
* `error`    — to error from clean, drifted or never seen.

A stack seen for the first time and clean raises nothing. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipsure.stacks.discovery import display
from shipsure.stacks.runner import CANCELLED, CHANGES, LOCKED, NO_CHANGES, StackRun

CLEAN = "clean"
DRIFTED = "drifted"
ERROR = "error"
SKIPPED = "skipped"
STATE_VERSION = 1


def status_of(run: StackRun) -> str:
    if run.result == NO_CHANGES:
        return CLEAN
    if run.result == CHANGES:
        return DRIFTED
    if run.result in (LOCKED, CANCELLED):
        return SKIPPED  # not checked: no transition, nothing to alert about
    return ERROR


@dataclass(frozen=True)
class Transition:
    path: str
    before: str | None
    after: str
    kind: str  # drifted, resolved, error

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": display(self.path),
            "before": self.before,
            "after": self.after,
            "kind": self.kind,
        }


def transition(path: str, before: str | None, after: str) -> Transition | None:
    if after == SKIPPED or before == after:
        return None
    if after == DRIFTED:
        return Transition(path, before, after, "drifted")
    if after == ERROR:
        return Transition(path, before, after, "error")
    if after == CLEAN and before in (DRIFTED, ERROR):
        return Transition(path, before, after, "resolved")
    return None


def previous_statuses(state: Mapping[str, Any] | None) -> dict[str, str]:
    stacks = (state or {}).get("stacks", {})
    if not isinstance(stacks, dict):
        return {}
    out: dict[str, str] = {}
    for path, entry in stacks.items():
        if isinstance(entry, dict) and entry.get("status") in (CLEAN, DRIFTED, ERROR):
            out[str(path)] = str(entry["status"])
    return out


def next_state(
    state: Mapping[str, Any] | None,
    current: Mapping[str, str],
    now: float,
    existing_stacks: Sequence[str],
) -> dict[str, Any]:
    """The state to store: new statuses, `since` kept while a status holds, skipped stacks
    unchanged, stacks that no longer exist dropped."""
    old = (state or {}).get("stacks", {})
    old = old if isinstance(old, dict) else {}
    keep = set(existing_stacks)
    stacks: dict[str, Any] = {p: e for p, e in old.items() if p in keep and isinstance(e, dict)}
    for path, status in current.items():
        if status == SKIPPED:
            continue
        before = stacks.get(path, {})
        since = before.get("since", now) if before.get("status") == status else now
        stacks[path] = {"status": status, "since": since, "checked_at": now}
    return {"version": STATE_VERSION, "stacks": stacks}


def collect(
    runs: Sequence[StackRun], previous: Mapping[str, str]
) -> tuple[dict[str, str], list[Transition]]:
    current = {r.path: status_of(r) for r in runs}
    changes = [t for r in runs if (t := transition(r.path, previous.get(r.path), current[r.path]))]
    return current, changes
