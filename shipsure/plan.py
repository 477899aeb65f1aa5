"""Plan, then apply: the one way shipsure changes anything (storage repairs, lint pins, lock
breaks, and what comes after them).

A writer builds a `Plan` (pure data: printable with `render_text`, serialisable with
`to_json`) and hands it, with a `Writer` that knows how to check and carry out its own kind of
`Action`, to `apply`. For each action `apply`:

1. journals the intent (`state: "intent"`), fsync'd, before anything changes;
2. asks `writer.check(action)` just before acting: `Ready()`, `AlreadyDone(why)` or
   `Refused(why)` — the world may have moved since the plan was made;
3. when ready, calls `writer.run(action)`;
4. journals the result (`done`, `already-done`, `refused` or `failed`), fsync'd.

Crash safety comes from two rules every writer keeps: `run` is a single atomic step (a
temp-file-and-rename write, a delete whose marker goes last, one backend call), and `check`
recognises an action that already took effect as `AlreadyDone`. A run killed at any point
therefore leaves the old state, or the new one with an open intent in the journal; re-running
the same command re-plans from the world as it is, and `apply` first settles every intent an
earlier run left open (re-checked: `already-done` when it took effect, `abandoned` with the
reason otherwise, never silently re-run), then applies the new plan.

The journal is JSON lines, one object per line: `time` (UTC, ISO 8601), `writer`, `plan` (a
hash of the plan's actions), `state`, `op`, `target`, `because`, `facts`, and `reason` on
results. It lives in the state folder (`state_dir()`; the CLI's `--journal`/`--state-dir`,
see `cli.common.journal_path`), never in the current directory unless a path is given.

A new writer (GC, retention, restore) needs three things:

    plan = Plan("gc", [Action("delete-blob", path, "blob-unreferenced", {"mtime": m})])
    class GcWriter:                      # shipsure.plan.Writer
        def check(self, action): ...     # Ready() / AlreadyDone(why) / Refused(why)
        def run(self, action): ...       # one atomic change; raise OSError/ShipsureError
    outcomes = apply(plan, GcWriter(), Journal(state_dir() / "gc-journal.jsonl"))

Errors: `JournalError` (a `CouldNotRunError`, exit 3) when the journal cannot be
written; a writer's own failure in `run` (`OSError` or any `ShipsureError`) is a `failed`
outcome and the next action still runs.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipsure.errors import CouldNotRunError, ShipsureError
from shipsure.fileio import fsync_dir
from shipsure.findings import ExitCode
from shipsure.report.terminal import printable

STATE_DIR_ENV = "SHIPSURE_STATE_DIR"
# Test hook: "POINT" or "POINT:N" makes the process exit abruptly (os._exit, no clean-up, as
# a SIGKILL would) the Nth time `apply` reaches POINT. Points: see `CRASH_POINTS`.
CRASH_ENV = "SHIPSURE_TEST_CRASH_AT"
CRASH_POINTS = ("before-intent", "after-intent", "after-run", "after-result")
_MAX_JOURNAL_LINE = 1 << 20


class JournalError(CouldNotRunError):
    """The journal could not be read or written; nothing further is applied."""


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where shipsure keeps its journals: `$SHIPSURE_STATE_DIR`, else
    `$XDG_STATE_HOME/shipsure`, else `~/.local/state/shipsure` (the XDG Base Directory
    specification's state home). Never the current directory."""
    env = os.environ if env is None else env
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    xdg = env.get("XDG_STATE_HOME", "")
    # The XDG specification: a relative path in $XDG_STATE_HOME is invalid and is ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "shipsure"
    home = env.get("HOME") or os.path.expanduser("~")
    if not home or not os.path.isabs(home):
        raise JournalError("no state folder: set HOME, XDG_STATE_HOME or --journal")
    return Path(home) / ".local" / "state" / "shipsure"


@dataclass(frozen=True, order=True)
class Action:
    """One change: `op` (what, e.g. "link-revision"), `target` (what it changes: a storage
    path, a file, a lock key), `because` (the finding or rule that asked for it). `facts` are
    what the plan saw (JSON values) and what `check` compares against; they do not take part
    in equality, so one (op, target) is one action."""

    op: str
    target: str
    because: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.op} {self.target}"

    def describe(self) -> str:
        # Targets and reasons hold storage and registry names: escaped for a terminal.
        why = f"  ({self.because})" if self.because else ""
        return printable(f"{self.op:18} {self.target}{why}")

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "target": self.target,
            "because": self.because,
            "facts": dict(self.facts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        facts = data.get("facts")
        return cls(
            str(data.get("op", "")),
            str(data.get("target", "")),
            str(data.get("because", "")),
            dict(facts) if isinstance(facts, dict) else {},
        )


@dataclass
class Plan:
    """What a writer would do (`actions`, in order) and what it will not do, with why
    (`notes`: one line each). Pure; nothing changes until `apply`."""

    writer: str  # "scan", "lint-fix", "locks-break", ...
    actions: list[Action]
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """sha256 (first 16 hex digits) of the actions' canonical JSON: the same plan made
        twice has the same id."""
        body = json.dumps([a.to_json() for a in self.actions], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "writer": self.writer,
            "plan": self.id,
            "actions": [a.to_json() | {"describe": a.describe()} for a in self.actions],
            "notes": list(self.notes),
        }

    def render_text(self) -> str:
        lines = [f"{self.writer} plan: {len(self.actions)} action(s)"]
        lines += [f"  {a.describe()}" for a in self.actions]
        lines += [f"  note: {printable(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Ready:
    """The precondition holds: run the action."""


@dataclass(frozen=True)
class AlreadyDone:
    """The action's effect is already there (an earlier run, or someone else, did it)."""

    reason: str = ""


@dataclass(frozen=True)
class Refused:
    """The world changed since the plan, or the action is unsafe now: leave it alone."""

    reason: str


Precondition = Ready | AlreadyDone | Refused


class Writer(Protocol):
    """What `apply` needs from a writer: the precondition of an action, checked just before it
    runs (and for actions a crashed run left open), and the one atomic step that carries it
    out. `run` raises `OSError` or a `ShipsureError` on failure."""

    def check(self, action: Action) -> Precondition: ...

    def run(self, action: Action) -> None: ...


class Result(enum.StrEnum):
    DONE = "done"
    ALREADY_DONE = "already-done"
    REFUSED = "refused"
    FAILED = "failed"
    ABANDONED = "abandoned"  # left open by a crashed run, not planned again, not done


@dataclass(frozen=True)
class Outcome:
    action: Action
    result: Result
    reason: str = ""
    recovered: bool = False  # settles an intent an earlier (interrupted) run left open

    def to_json(self) -> dict[str, Any]:
        out = self.action.to_json() | {"result": str(self.result), "reason": self.reason}
        return out | {"recovered": True} if self.recovered else out

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        earlier = " [interrupted earlier]" if self.recovered else ""
        return printable(f"{self.result:13} {self.action.describe()}{why}{earlier}")


_FINAL = frozenset(str(r) for r in Result)


class Journal:
    """An append-only JSON-lines file. Created (with its folder) on the first record, so a
    run that changes nothing leaves nothing behind; every record is fsync'd before `record`
    returns, and the folder is fsync'd when the file is created."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def record(self, writer: str, plan: str, state: str, action: Action, reason: str = "") -> None:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "writer": writer,
            "plan": plan,
            "state": state,
            **action.to_json(),
        }
        if reason:
            entry["reason"] = reason
        line = json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n"
        try:
            created = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO as journal fails at once instead of waiting for a reader.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, "not a regular file")
                # One write() of one line with O_APPEND: concurrent appenders never interleave
                # inside a line on a local filesystem.
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                # The new file's directory entry must reach the disk too.
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every well-formed record; a torn last line (a crash mid-append) is skipped."""
        try:
            # O_NONBLOCK: opening a FIFO to read would wait for a writer for ever.
            handle = os.fdopen(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), "rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None
        with handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                # /dev/zero or /dev/full is an endless line: reading it never ends.
                raise JournalError(f"journal {self.path}: not a regular file")
            while raw := handle.readline(_MAX_JOURNAL_LINE + 1):
                if len(raw) > _MAX_JOURNAL_LINE:
                    # Never held whole: skip the rest of an over-long line in bounded reads.
                    while raw and not raw.endswith(b"\n"):
                        raw = handle.readline(_MAX_JOURNAL_LINE + 1)
                    continue
                with contextlib.suppress(ValueError, RecursionError):
                    entry = json.loads(raw)
                    if isinstance(entry, dict):
                        yield entry

    def open_intents(self, writer: str) -> list[Action]:
        """Actions of `writer` with an intent and no result after it: what a run that was
        killed was doing. Memory grows with the open intents, not the journal."""
        open_: dict[str, Action] = {}
        for entry in self.entries():
            if entry.get("writer") != writer:
                continue
            action = Action.from_json(entry)
            if entry.get("state") == "intent":
                open_[action.key] = action
            elif entry.get("state") in _FINAL:
                open_.pop(action.key, None)
        return list(open_.values())


class _Crash:
    """The test hook behind `SHIPSURE_TEST_CRASH_AT`."""

    def __init__(self, spec: str) -> None:
        point, _, nth = spec.partition(":")
        self.point = point
        self.left = int(nth) if nth.isdigit() else 1

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.left -= 1
        if self.left == 0:
            os._exit(137)


def apply(plan: Plan, writer: Writer, journal: Journal) -> list[Outcome]:
    """Carry out `plan` with `writer`, journaled; returns one outcome per action, preceded
    by one per intent an earlier run of the same writer left open. Raises `JournalError`."""
    crash = _Crash(os.environ.get(CRASH_ENV, ""))
    plan_id = plan.id
    planned = {a.key for a in plan.actions}
    outcomes: list[Outcome] = []
    for action in journal.open_intents(plan.writer):
        if action.key in planned:
            continue  # the new plan does it again, re-checked; its result closes the intent
        outcome = _settle(writer, action)
        journal.record(plan.writer, plan_id, outcome.result, action, outcome.reason)
        outcomes.append(outcome)
    for action in plan.actions:
        crash.reached("before-intent")
        journal.record(plan.writer, plan_id, "intent", action)
        crash.reached("after-intent")
        outcome = _apply_one(writer, action, crash)
        journal.record(plan.writer, plan_id, outcome.result, action, outcome.reason)
        crash.reached("after-result")
        outcomes.append(outcome)
    return outcomes


def _apply_one(writer: Writer, action: Action, crash: _Crash) -> Outcome:
    try:
        match writer.check(action):
            case AlreadyDone(reason):
                return Outcome(action, Result.ALREADY_DONE, reason)
            case Refused(reason):
                return Outcome(action, Result.REFUSED, reason)
            case Ready():
                writer.run(action)
                crash.reached("after-run")
                return Outcome(action, Result.DONE)
    except (OSError, ShipsureError) as exc:
        return Outcome(action, Result.FAILED, _reason(exc))
    raise AssertionError("check() returned no precondition")  # pragma: no cover


def _settle(writer: Writer, action: Action) -> Outcome:
    """An intent left open by a killed run whose action the new plan does not hold."""
    try:
        match writer.check(action):
            case AlreadyDone(reason):
                return Outcome(action, Result.ALREADY_DONE, reason, recovered=True)
            case Refused(reason):
                return Outcome(action, Result.ABANDONED, reason, recovered=True)
            case Ready():
                why = "not done, and not planned again; re-plan to do it"
                return Outcome(action, Result.ABANDONED, why, recovered=True)
    except (OSError, ShipsureError) as exc:
        return Outcome(action, Result.ABANDONED, _reason(exc), recovered=True)
    raise AssertionError("check() returned no precondition")  # pragma: no cover


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return str(exc)


def summary(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Outcomes counted by result, for a one-line summary."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[str(o.result)] = counts.get(str(o.result), 0) + 1
    return counts


def exit_code(outcomes: Iterable[Outcome]) -> ExitCode:
    """What an `--apply` run's outcomes say for its exit code (README, "Writes"):
    COULD_NOT_RUN (3) when an action failed; FINDINGS (1) when one was refused (the
    storage or registry changed since the plan, so the run did less than it printed and
    must not look clean); CLEAN otherwise. Abandoned intents of an earlier run are CLEAN:
    running again would not change them."""
    results = {o.result for o in outcomes}
    if Result.FAILED in results:
        return ExitCode.COULD_NOT_RUN
    if Result.REFUSED in results:
        return ExitCode.FINDINGS
    return ExitCode.CLEAN
