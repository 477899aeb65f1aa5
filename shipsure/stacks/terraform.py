"""Running the stack binary (terraform, tofu or terragrunt): where it is, what to call,
and how to stop it.

Each step runs in its own process group with its output in the stack's log file. A step
is interrupted (SIGINT, which Terraform answers by stopping cleanly and writing state;
then SIGTERM; then SIGKILL) when the run is cancelled, when the stack's lock is lost, or
when the step outlives its timeout.

A step cannot outlive the runner: on Linux it is started with `PR_SET_PDEATHSIG` set to
SIGTERM (prctl(2)), so the kernel interrupts it when the runner dies, even by SIGKILL, and
Terraform stops cleanly instead of applying on under a lock nobody renews.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shipsure.errors import BadInputError, CouldNotRunError

POLL_SECONDS = 0.2
INTERRUPT_GRACE_SECONDS = 20.0
TERM_GRACE_SECONDS = 5.0
INIT_LOCK_NAME = ".shipsure-init.lock"


# prctl(2): PR_SET_PDEATHSIG = 1. Resolved once, in the parent: the child between fork and
# exec must not load libraries or take locks another thread may hold.
_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive SIGTERM when its parent dies."""
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


def pdeathsig_supported() -> bool:
    return _prctl is not None


def locate_binary(name: str) -> str:
    """A path to the binary: `name` itself when it is a path, else next to this Python
    (a virtualenv's console scripts), else on PATH."""
    if "/" in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise BadInputError(f"binary {name}: not an executable file")
        return name
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise CouldNotRunError(f"binary {name}: not found next to {sys.executable} or on PATH")
    return found


def is_terragrunt(binary: str) -> bool:
    return "terragrunt" in os.path.basename(binary)


def step_argv(binary: str, step: str) -> list[str]:
    common = ["-input=false", "-no-color"]
    if step == "init":
        return [binary, "init", *common]
    if step == "plan":
        # 0 no changes, 1 error, 2 changes present.
        return [binary, "plan", *common, "-detailed-exitcode"]
    if step == "apply":
        return [binary, "apply", *common, "-auto-approve"]
    raise ValueError(f"unknown step {step!r}")


def step_env(base: Mapping[str, str], binary: str, plugin_cache: Path) -> dict[str, str]:
    env = dict(base)
    env["TF_PLUGIN_CACHE_DIR"] = str(plugin_cache)
    env["TF_IN_AUTOMATION"] = "1"
    env["TF_INPUT"] = "0"
    # No upgrade check from CI runners (it calls out to checkpoint-api.hashicorp.com).
    env.setdefault("CHECKPOINT_DISABLE", "1")
    if is_terragrunt(binary):
        env["TERRAGRUNT_NON_INTERACTIVE"] = "true"
        env["TG_NON_INTERACTIVE"] = "true"
    return env


@dataclass(frozen=True)
class StepOutcome:
    returncode: int | None  # None when we stopped it
    stopped_because: str = ""  # "cancelled", "lock lost", "timed out after Ns"


def run_step(
    argv: list[str],
    cwd: Path,
    log: BinaryIO,
    env: Mapping[str, str],
    timeout: float,
    should_stop: Callable[[], str],
) -> StepOutcome:
    """Run one step to completion, or stop it when `should_stop()` names a reason."""
    log.write(f"$ {' '.join(argv)}\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,  # our own process group: we decide when it stops
            preexec_fn=_die_with_parent(os.getpid()),
        )
    except OSError as exc:
        raise CouldNotRunError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                code = proc.wait(timeout=POLL_SECONDS)
                return StepOutcome(code)
            except subprocess.TimeoutExpired:
                pass
            reason = should_stop()
            if not reason and time.monotonic() > deadline:
                reason = f"timed out after {timeout:.0f}s"
            if reason:
                log.write(f"\nshipsure: stopping {argv[1]}: {reason}\n".encode())
                stop_process(proc)
                return StepOutcome(None, reason)
    except BaseException:
        stop_process(proc)
        raise


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT the group (clean stop), then SIGTERM, then SIGKILL."""
    for sig, grace in (
        (signal.SIGINT, INTERRUPT_GRACE_SECONDS),
        (signal.SIGTERM, TERM_GRACE_SECONDS),
        (signal.SIGKILL, TERM_GRACE_SECONDS),
    ):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


@contextlib.contextmanager
def init_lock(plugin_cache: Path, cancelled: threading.Event) -> Iterator[bool]:
    """Serialize `init` on one plugin cache across threads and processes (the cache is
    not safe for concurrent access: hashicorp/terraform#31964, #32915). Yields False when
    the run was cancelled while waiting."""
    plugin_cache.mkdir(parents=True, exist_ok=True)
    with (plugin_cache / INIT_LOCK_NAME).open("a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancelled.wait(POLL_SECONDS):
                    yield False
                    return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
