"""Run plan or apply on many stacks: `init` one at a time, plan/apply up to N at a time,
every stack under its advisory lock.

For each stack, in a pool of N worker threads:

1. take the stack's lock (held → result `locked`; `--lock-wait` polls first); the lock is
   renewed in the background for as long as the stack runs and released afterwards, also
   on errors and on Ctrl-C;
2. `init`, holding a file lock on the shared plugin cache;
3. `plan -detailed-exitcode` or `apply -auto-approve`, stopped cleanly if the lock is lost.

Each stack writes `<log dir>/<stack path, "/" replaced by "__">.log`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from shipsure.stacks.discovery import display
from shipsure.stacks.locks import LockBackend, LockError, LockHeld, hold
from shipsure.stacks.locks.holder import HeldLock
from shipsure.stacks.terraform import init_lock, run_step, step_argv, step_env

# Results; OK_RESULTS are the successful ones.
OK = "ok"
CHANGES = "changes"
NO_CHANGES = "no changes"
FAILED = "failed"
LOCKED = "locked"
LOCK_LOST = "lock lost"
LOCK_ERROR = "lock error"
CANCELLED = "cancelled"
TIMED_OUT = "timed out"
OK_RESULTS = frozenset({OK, CHANGES, NO_CHANGES})


@dataclass
class StackRun:
    path: str
    result: str = CANCELLED
    duration: float = 0.0
    log: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": display(self.path),
            "result": self.result,
            "duration_seconds": round(self.duration, 3),
            "log": self.log,
            "detail": self.detail,
        }


@dataclass
class RunSettings:
    repo_root: Path
    action: str  # "plan" or "apply"
    binary: str
    parallel: int
    backend: LockBackend
    lock_ttl: float
    lock_wait: float
    log_dir: Path
    plugin_cache: Path
    step_timeout: float
    env: Mapping[str, str]
    owner: str
    note: str = ""
    lock_prefix: str = ""
    lock_poll: float = 2.0
    cancelled: threading.Event = field(default_factory=threading.Event)


def log_name(stack: str) -> str:
    return (stack.replace("/", "__") or "_root") + ".log"


def lock_key(prefix: str, stack: str) -> str:
    return f"{prefix}{stack or '.'}"


def run_stacks(settings: RunSettings, stacks: Sequence[str]) -> list[StackRun]:
    """Results in the order of `stacks`. Ctrl-C cancels: running steps are stopped,
    locks released, then KeyboardInterrupt goes on up."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    runs = {s: StackRun(s, log=str(settings.log_dir / log_name(s))) for s in stacks}
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, settings.parallel), thread_name_prefix="shipsure-stack"
    )
    try:
        futures = [pool.submit(_run_one, settings, runs[s]) for s in stacks]
        for future in concurrent.futures.as_completed(futures):
            future.result()
    except BaseException:
        settings.cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [runs[s] for s in stacks]


def _run_one(settings: RunSettings, run: StackRun) -> None:
    if settings.cancelled.is_set():
        return
    started = time.monotonic()
    try:
        with _open_log(run.log) as log:
            try:
                _locked_run(settings, run, log)
            except OSError as exc:
                # Not the log's fault: the plugin cache's lock file, the stack folder.
                where = f"{exc.filename}: " if exc.filename else ""
                run.result, run.detail = FAILED, f"{where}{exc.strerror or exc}"
    except OSError as exc:
        run.result, run.detail = FAILED, f"cannot write log {run.log}: {exc.strerror or exc}"
    finally:
        run.duration = time.monotonic() - started


def _open_log(path: str) -> BinaryIO:
    """The stack's log, truncated. Non-blocking: a FIFO left at that path (no reader) is
    an error (ENXIO), not a run waiting forever."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        os.set_blocking(fd, True)  # writes to a regular file or a terminal may block
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _locked_run(settings: RunSettings, run: StackRun, log: BinaryIO) -> None:
    key = lock_key(settings.lock_prefix, run.path)
    try:
        with hold(
            settings.backend,
            key,
            settings.owner,
            settings.lock_ttl,
            settings.note,
            wait=settings.lock_wait,
            poll=settings.lock_poll,
        ) as held:
            log.write(f"shipsure: holding lock {key!r} as {held.owner}\n".encode())
            _steps(settings, run, log, held)
    except LockHeld as exc:
        run.result, run.detail = LOCKED, str(exc)
    except LockError as exc:
        # Raised by acquire, or by the final release when the lock was already lost.
        if run.result in OK_RESULTS:
            run.result = LOCK_LOST
        elif run.result == CANCELLED:
            run.result = LOCK_ERROR
        run.detail = str(exc)
    if run.detail:
        log.write(f"shipsure: {run.result}: {run.detail}\n".encode())


def _steps(settings: RunSettings, run: StackRun, log: BinaryIO, held: HeldLock) -> None:
    cwd = settings.repo_root / run.path
    env = step_env(settings.env, settings.binary, settings.plugin_cache)

    def should_stop() -> str:
        if settings.cancelled.is_set():
            return "cancelled"
        if held.lost:
            return f"lock lost: {held.lost_reason}"
        return ""

    with init_lock(settings.plugin_cache, settings.cancelled) as got_it:
        if not got_it:
            return
        if not _still_ours(run, "init", held):
            return
        outcome = run_step(
            step_argv(settings.binary, "init"), cwd, log, env, settings.step_timeout, should_stop
        )
    if not _step_ok(run, "init", outcome.returncode, outcome.stopped_because, held):
        return
    if not _still_ours(run, settings.action, held):
        return
    argv = step_argv(settings.binary, settings.action)
    outcome = run_step(argv, cwd, log, env, settings.step_timeout, should_stop)
    code = outcome.returncode
    if settings.action == "plan" and code in (0, 2):
        run.result = NO_CHANGES if code == 0 else CHANGES
    elif _step_ok(run, settings.action, code, outcome.stopped_because, held):
        run.result = OK
    if held.lost and run.result in OK_RESULTS:
        run.result, run.detail = LOCK_LOST, held.lost_reason


def _still_ours(run: StackRun, step: str, held: HeldLock) -> bool:
    """Read the lock before a step: a backend that lost it must not see the step start."""
    if held.confirm():
        return True
    run.result, run.detail = LOCK_LOST, f"{step} not started: {held.lost_reason}"
    return False


def _step_ok(run: StackRun, step: str, code: int | None, stopped: str, held: HeldLock) -> bool:
    if code == 0:
        return True
    if code is None:
        if stopped == "cancelled":
            run.result = CANCELLED
        elif stopped.startswith("lock lost"):
            run.result = LOCK_LOST
        else:
            run.result = TIMED_OUT
        run.detail = f"{step} {stopped}"
    else:
        run.result, run.detail = FAILED, f"{step} exited with {code}"
    return False


# What `docker stop`, CI cancellation, systemd and a closed terminal send, and Ctrl-C.
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def cancel_on_signals(cancelled: threading.Event) -> Iterator[list[int]]:
    """While inside, SIGTERM, SIGINT and SIGHUP cancel the run instead of killing the
    runner: steps are stopped (their process groups interrupted), locks released, and the
    caller still prints its summary. Yields the list the signals received are appended to.
    Only the main thread can install handlers; elsewhere this does nothing."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        cancelled.set()

    previous = {sig: signal.signal(sig, handler) for sig in CANCEL_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def summary_table(runs: Sequence[StackRun]) -> str:
    rows = [("STACK", "RESULT", "DURATION", "LOG")]
    rows += [(display(r.path), r.result, f"{r.duration:.1f}s", r.log) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row))
        for row in rows
    ]
    failed = [r for r in runs if not r.ok]
    lines.append(f"{len(runs) - len(failed)} of {len(runs)} stack(s) succeeded")
    lines += [f"  {display(r.path)}: {r.result}: {r.detail}" for r in failed if r.detail]
    return "\n".join(lines) + "\n"
