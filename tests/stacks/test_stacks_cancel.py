"""A cancelled run stops cleanly: SIGTERM (docker stop, CI cancel, systemd) is handled like
Ctrl-C, and a step cannot outlive its runner, even one killed by SIGKILL.

The runner runs as a real process (`python -m shipsure.cli.main`). The long-running step is
either real Terraform 1.0.3 applying while it waits for its state lock (held by the test
with the same fcntl lock Terraform's local backend takes), or a fake named as such.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_helpers import make_tf_repo

from shipsure.stacks.locks import open_backend
from shipsure.stacks.terraform import pdeathsig_supported

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120.0  # an upper bound for things that take well under a second

pytestmark = pytest.mark.skipif(not pdeathsig_supported(), reason="needs Linux prctl(2)")


def state(pid: int) -> str | None:
    """The process's state letter, None when it is gone (a zombie counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    letter = text.rsplit(")", 1)[1].split()[0]
    return None if letter in ("Z", "X") else letter


def wait_for(what: str, check: object) -> object:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def children(pid: int, name: str) -> list[int]:
    """Processes whose parent is `pid` and whose command is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and comm == name:
            found.append(int(entry.name))
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_tf_repo(tmp_path / "infra", ["s1"])


def start_runner(
    repo: Path,
    tmp_path: Path,
    binary: str,
    env: dict[str, str],
    command: tuple[str, ...] = ("run", "apply"),
) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "shipsure.cli.main", "stacks", *command, "stacks/s1",
        "--repo", str(repo),
        "--binary", binary,
        "--plugin-cache", str(tmp_path / "cache"),
        "--lock-url", f"file://{tmp_path}/locks",
        "--format", "json",
    ]  # fmt: skip
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env)  # fmt: skip


@pytest.fixture
def state_lock(repo: Path) -> Iterator[None]:
    """Hold stacks/s1's Terraform state lock, so `terraform apply -lock-timeout` waits."""
    path = repo / "stacks" / "s1" / "terraform.tfstate"
    # Held as Terraform's local backend holds it: an fcntl lock on the state and the lock
    # info file beside it. Without the info file, Terraform 1.0 fails at once ("open
    # .terraform.tfstate.lock.info: no such file") instead of waiting out -lock-timeout.
    info = path.with_name(".terraform.tfstate.lock.info")
    with path.open("a+b") as handle:
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        info.write_text(
            json.dumps({"ID": "held-by-test", "Operation": "OperationTypeApply", "Who": "test"})
        )
        try:
            yield
        finally:
            info.unlink(missing_ok=True)


def fake_terraform(tmp_path: Path, terraform_bin: str) -> Path:
    """A fake named as such: real `terraform init`, then an `apply` that only sleeps."""
    script = tmp_path / "fake-terraform-apply-sleeps"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = init ]; then exec "{terraform_bin}" "$@"; fi\nexec sleep 600\n'
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("real", [True, False], ids=["real-terraform", "fake-apply"])
def test_sigterm_stops_the_apply_releases_the_lock_and_prints_the_summary(
    real: bool, repo: Path, tmp_path: Path, terraform_bin: str, request: pytest.FixtureRequest
) -> None:
    if real:
        request.getfixturevalue("state_lock")
        binary, name = terraform_bin, "terraform"
    else:
        binary, name = str(fake_terraform(tmp_path, terraform_bin)), "sleep"
    runner = start_runner(repo, tmp_path, binary, {"TF_CLI_ARGS_apply": "-lock-timeout=600s"})
    try:
        [apply] = wait_for("the apply to start", lambda: children(runner.pid, name))  # type: ignore[misc]
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=WAIT_SECONDS)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 128 + signal.SIGTERM
    assert "cancelled by SIGTERM" in err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert [(s["path"], s["result"]) for s in summary["stacks"]] == [("stacks/s1", "cancelled")]
    assert state(apply) is None
    backend = open_backend(f"file://{tmp_path}/locks")
    assert backend.list() == []
    backend.close()


@pytest.mark.parametrize("real", [True, False], ids=["real-terraform", "fake-apply"])
def test_an_apply_cannot_outlive_a_runner_killed_by_sigkill(
    real: bool, repo: Path, tmp_path: Path, terraform_bin: str, request: pytest.FixtureRequest
) -> None:
    if real:
        request.getfixturevalue("state_lock")
        binary, name = terraform_bin, "terraform"
    else:
        binary, name = str(fake_terraform(tmp_path, terraform_bin)), "sleep"
    runner = start_runner(repo, tmp_path, binary, {"TF_CLI_ARGS_apply": "-lock-timeout=600s"})
    try:
        [apply] = wait_for("the apply to start", lambda: children(runner.pid, name))  # type: ignore[misc]
        runner.kill()
        runner.communicate(timeout=WAIT_SECONDS)
        # The kernel sends the step SIGTERM when its parent dies; it stops on its own.
        wait_for("the orphaned apply to stop", lambda: state(apply) is None)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()


def test_sigterm_cancels_drift_without_alerting_or_recording_an_error(
    repo: Path, tmp_path: Path, terraform_bin: str
) -> None:
    binary = str(fake_terraform(tmp_path, terraform_bin))  # its plan sleeps too
    state_file = tmp_path / "drift.json"
    runner = start_runner(repo, tmp_path, binary, {}, ("drift", "--state-file", str(state_file)))
    try:
        [plan] = wait_for("the plan to start", lambda: children(runner.pid, "sleep"))  # type: ignore[misc]
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=WAIT_SECONDS)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 128 + signal.SIGTERM
    assert "cancelled by SIGTERM" in err
    assert state(plan) is None
    # A cancelled check is no "error" transition: nothing is recorded for the stack.
    assert json.loads(state_file.read_text())["stacks"] == {}
