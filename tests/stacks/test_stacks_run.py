"""`shipsure stacks run` with real Terraform: parallel limit, serialized init, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import commit, git, make_tf_repo

from shipsure.cli.main import main
from shipsure.stacks.locks import open_backend
from shipsure.stacks.runner import CANCELLED, RunSettings, run_stacks


def recording_binary(folder: Path, real: str) -> tuple[Path, Path]:
    """A wrapper that logs `start|end <step> <pid>` lines around the real terraform."""
    events = folder / "events.log"
    script = folder / "terraform-recorded"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "start $1 $$" >> "{events}"\n'
        f'"{real}" "$@"\n'
        "rc=$?\n"
        f'echo "end $1 $$" >> "{events}"\n'
        "exit $rc\n"
    )
    script.chmod(0o755)
    return script, events


def max_overlap(events: Path, step: str) -> int:
    running = peak = 0
    for line in events.read_text().splitlines():
        edge, name, _ = line.split()
        if name == step:
            running += 1 if edge == "start" else -1
            peak = max(peak, running)
    return peak


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["stacks", "run", *argv, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture
def tf_repo(tmp_path: Path) -> Path:
    return make_tf_repo(tmp_path / "infra", ["s1", "s2", "s3", "s4"])


def common(repo: Path, cache: Path, binary: str) -> list[str]:
    return [
        "--repo", str(repo),
        "--plugin-cache", str(cache),
        "--binary", binary,
        "--lock-url", f"file://{repo}/.shipsure/locks",
    ]  # fmt: skip


def test_apply_all_honours_parallel_limit_and_serial_init(
    tf_repo: Path,
    tmp_path: Path,
    plugin_cache: Path,
    terraform_bin: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    binary, events = recording_binary(tmp_path, terraform_bin)
    opts = common(tf_repo, plugin_cache, str(binary))
    code, body = run_cli(capsys, "apply", "--all", "--parallel", "2", *opts)
    assert code == 0, body
    assert [s["result"] for s in body["stacks"]] == ["ok"] * 4
    assert max_overlap(events, "init") == 1
    assert 1 <= max_overlap(events, "apply") <= 2
    assert (tf_repo / ".shipsure/logs/stacks__s3.log").is_file()
    assert "Apply complete" in (tf_repo / ".shipsure/logs/stacks__s3.log").read_text()
    head = git(tf_repo, "rev-parse", "HEAD")
    assert body["last_applied_recorded"] is True
    assert (tf_repo / ".shipsure/state/last-applied").read_text().strip() == head

    # Next change: only the touched stack runs, diffed against the recorded apply.
    commit(tf_repo, {"stacks/s2/extra.tf": 'output "extra" { value = 1 }\n'})
    code, body = run_cli(capsys, "plan", "--changed", "--since-last-apply", *opts)
    assert code == 0
    assert [(s["path"], s["result"]) for s in body["stacks"]] == [("stacks/s2", "changes")]
    # A plan never moves the recorded apply; the text summary names every stack.
    assert (tf_repo / ".shipsure/state/last-applied").read_text().strip() == head
    assert main(["stacks", "run", "plan", "stacks/s1", "stacks/s2", *opts]) == 0
    out = capsys.readouterr().out
    assert "stacks/s1  no changes" in out and "2 of 2 stack(s) succeeded" in out


def test_held_lock_is_reported_and_crashed_holder_taken_over_after_ttl(
    tf_repo: Path, plugin_cache: Path, terraform_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = common(tf_repo, plugin_cache, terraform_bin)
    backend = open_backend(f"file://{tf_repo}/.shipsure/locks")
    try:
        # A runner that crashed while holding the lock: it will never renew it.
        assert backend.acquire("stacks/s1", "crashed-runner", ttl=1.5, note="old") is not None
        code, body = run_cli(capsys, "apply", "stacks/s1", *opts)
        assert code == 1
        assert body["stacks"][0]["result"] == "locked"
        assert "crashed-runner" in body["stacks"][0]["detail"]
        assert "$ " not in Path(body["stacks"][0]["log"]).read_text()  # nothing ran
        assert not (tf_repo / ".shipsure/state/last-applied").exists()

        code, body = run_cli(capsys, "apply", "stacks/s1", "--lock-wait", "30", *opts)
        assert code == 0
        assert body["stacks"][0]["result"] == "ok"
        assert backend.get("stacks/s1") is None  # released after the run
        # Naming stacks is not a complete changed set: nothing is recorded.
        assert body["last_applied_recorded"] is False
    finally:
        backend.close()


def test_two_concurrent_applies_of_one_stack_never_overlap(
    tf_repo: Path, tmp_path: Path, plugin_cache: Path, terraform_bin: str
) -> None:
    binary, events = recording_binary(tmp_path, terraform_bin)
    argv = [sys.executable, "-m", "shipsure", "stacks", "run", "apply", "stacks/s1"]
    argv += [*common(tf_repo, plugin_cache, str(binary)), "--lock-wait", "120"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    lines = [line.split()[:2] for line in events.read_text().splitlines()]
    # Strictly one runner at a time: its init and apply, then the other's.
    expected = [["start", "init"], ["end", "init"], ["start", "apply"], ["end", "apply"]] * 2
    assert lines == expected


def test_failed_stack_sets_exit_code(
    tf_repo: Path, plugin_cache: Path, terraform_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    commit(tf_repo, {"stacks/s4/main.tf": 'output "x" {\n'})
    opts = common(tf_repo, plugin_cache, terraform_bin)
    code, body = run_cli(capsys, "plan", "stacks/s1", "stacks/s4", *opts)
    assert code == 1
    results = {s["path"]: (s["result"], s["detail"]) for s in body["stacks"]}
    assert results["stacks/s1"] == ("changes", "")
    assert results["stacks/s4"] == ("failed", "init exited with 1")


def test_dry_run_prints_the_work_and_runs_nothing(
    tf_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(tf_repo, "rev-parse", "HEAD")
    commit(tf_repo, {"modules/greet/extra.tf": "locals {}\n"})
    argv = ["stacks", "run", "apply", "--changed", "--base", base, "--dry-run"]
    assert main([*argv, "--repo", str(tf_repo)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would run terraform apply on 4 stack(s), 4 at a time:")
    assert "stacks/s2: init, apply under lock 'stacks/s2'" in out
    assert "module modules/greet changed" in out
    assert not (tf_repo / ".shipsure/logs").exists()


def test_bad_stack_and_missing_selection_are_usage_errors(
    tf_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stacks", "run", "plan", "--repo", str(tf_repo)]) == 2
    assert "--changed or --all" in capsys.readouterr().err
    assert main(["stacks", "run", "plan", "modules/greet", "--repo", str(tf_repo)]) == 2
    assert "not a stack folder" in capsys.readouterr().err
    assert main(["stacks", "run", "plan", "--all", "--binary", "no-such-tf", "--repo",
                 str(tf_repo)]) == 3  # fmt: skip
    assert "no-such-tf: not found" in capsys.readouterr().err


def test_cancel_stops_children_and_releases_locks(tmp_path: Path, tf_repo: Path) -> None:
    started = tmp_path / "started"
    hung = tmp_path / "hung-terraform"
    hung.write_text(f'#!/bin/sh\ntouch "{started}"\nexec sleep 600\n')
    hung.chmod(0o755)
    backend = open_backend(f"file://{tmp_path}/locks")
    settings = RunSettings(
        repo_root=tf_repo,
        action="apply",
        binary=str(hung),
        parallel=2,
        backend=backend,
        lock_ttl=60,
        lock_wait=0,
        log_dir=tmp_path / "logs",
        plugin_cache=tmp_path / "cache",
        step_timeout=600,
        env=os.environ,
        owner="test-runner",
    )

    def cancel_once_started() -> None:
        while not started.exists() and not settings.cancelled.wait(0.05):
            pass
        settings.cancelled.set()

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    try:
        runs = run_stacks(settings, ["stacks/s1", "stacks/s2"])
    finally:
        settings.cancelled.set()
        canceller.join(30)
    assert [r.result for r in runs] == [CANCELLED, CANCELLED]
    assert backend.list() == []
    backend.close()


def test_a_lock_lost_during_init_stops_the_run_before_apply(tmp_path: Path, tf_repo: Path) -> None:
    """The lock is read before each step: a backend that lost it (simulated by the fake
    init below, which breaks the lock and lets another runner take it) means the apply never
    starts, whatever the renewal schedule."""
    applied = tmp_path / "applied"
    locks = tmp_path / "locks"
    fake = tmp_path / "fake-terraform-loses-lock-in-init"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from pathlib import Path\n"
        "from shipsure.stacks.locks import open_backend\n"
        "if sys.argv[1] == 'init':\n"
        f"    backend = open_backend('file://{locks}')\n"
        "    backend.force_break('stacks/s1')\n"
        "    backend.acquire('stacks/s1', 'runner-b', 600)\n"
        "else:\n"
        f"    Path('{applied}').touch()\n"
    )
    fake.chmod(0o755)
    backend = open_backend(f"file://{locks}")
    settings = RunSettings(
        repo_root=tf_repo,
        action="apply",
        binary=str(fake),
        parallel=1,
        backend=backend,
        lock_ttl=600,  # the first renewal would come 200 s later
        lock_wait=0,
        log_dir=tmp_path / "logs",
        plugin_cache=tmp_path / "cache",
        step_timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        owner="runner-a",
    )
    [run] = run_stacks(settings, ["stacks/s1"])
    assert run.result == "lock lost"
    # Noticed before apply (or, on a slow machine, by the heartbeat's check during init).
    assert "lock 'stacks/s1' of runner-a" in run.detail
    assert not applied.exists()
    holder = backend.get("stacks/s1")
    assert holder is not None and holder.owner == "runner-b"  # A's release left B's lock
    backend.close()
