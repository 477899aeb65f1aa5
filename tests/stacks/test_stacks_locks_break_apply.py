"""`stacks locks break --apply` as a writer: exactly the lock the plan showed, a kill at any
point then a re-run ends consistent, nothing written into the current folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stack_helpers import commit, init_repo
from writer_helpers import run_shipsure

from shipsure import plan
from shipsure.cli.main import main
from shipsure.stacks.locks import open_backend


@pytest.fixture
def lock_repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    init_repo(root)
    commit(root, {"stacks/a/main.tf": "locals {}\n"})
    return root


def test_a_lock_that_changed_hands_since_the_plan_is_not_broken(
    lock_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shipsure.stacks.locks.breaking import BreakWriter, plan_break

    backend = open_backend(f"file://{lock_repo}/.shipsure/locks")
    try:
        backend.acquire("stacks/a", "runner-1", ttl=600)
        planned = plan_break("stacks/a", backend.get("stacks/a"))
        backend.release("stacks/a", "runner-1")
        backend.acquire("stacks/a", "runner-2", ttl=600)
        journal = plan.Journal(lock_repo / "j.jsonl")
        (outcome,) = plan.apply(planned, BreakWriter(backend), journal)
        assert outcome.result is plan.Result.REFUSED and "runner-2" in outcome.reason
        info = backend.get("stacks/a")
        assert info is not None and info.owner == "runner-2"
    finally:
        backend.close()


@pytest.mark.parametrize("point", plan.CRASH_POINTS)
def test_killed_at_any_point_then_rerun_ends_consistent(
    lock_repo: Path, tmp_path: Path, point: str
) -> None:
    url = f"file://{tmp_path}/locks"
    backend = open_backend(url)
    try:
        backend.acquire("stacks/a", "runner-1", ttl=600, note="pipeline 42")
        args = ["stacks", "locks", "break", "stacks/a", "--repo", str(lock_repo)]
        args += ["--lock-url", url, "--apply"]
        killed = run_shipsure(args, cwd=tmp_path, state_home=tmp_path / "s", crash=point)
        assert killed.returncode == 137, killed.stderr
        rerun = run_shipsure(args, cwd=tmp_path, state_home=tmp_path / "s")
        assert rerun.returncode == 0, rerun.stderr
        assert backend.get("stacks/a") is None
        journal = plan.Journal(lock_repo / ".shipsure" / "state" / "journal.jsonl")
        assert journal.open_intents("locks-break") == []
        if point == "after-run":
            assert "already gone" in rerun.stdout and "interrupted" in rerun.stdout
    finally:
        backend.close()


def test_break_writes_nothing_into_the_current_folder(lock_repo: Path, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/locks"
    backend = open_backend(url)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    try:
        backend.acquire("stacks/a", "runner-1", ttl=600)
        args = ["stacks", "locks", "break", "stacks/a", "--repo", str(lock_repo)]
        done = run_shipsure(
            [*args, "--lock-url", url, "--apply"], cwd=cwd, state_home=tmp_path / "s"
        )
        assert done.returncode == 0, done.stderr
        assert "broke lock 'stacks/a'" in done.stdout
    finally:
        backend.close()
    assert list(cwd.iterdir()) == []
    assert main(["stacks", "locks", "list", "--repo", str(lock_repo), "--lock-url", url]) == 0


def test_an_unreadable_lock_file_is_broken_as_the_error_advises(
    lock_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The error said "remove it with `shipsure stacks locks break`", which refused it too.
    locks = lock_repo / ".shipsure" / "locks"
    locks.mkdir(parents=True)
    bad = locks / "stacks%2Fa.lock.json"
    bad.write_bytes(b"\x00garbage\xff")
    from shipsure.stacks.locks.file import FileLockBackend

    assert FileLockBackend(locks).acquire("stacks/b", "runner-b", 60.0) is not None
    argv = ["stacks", "locks", "list", "--repo", str(lock_repo)]
    # The damaged key is listed with the live ones, not instead of them; exit 3 says some
    # lock could not be read.
    assert main(argv) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("stacks/b  runner-b  since ")
    assert lines[1].startswith("stacks/a  unreadable: lock file ")
    assert lines[1].endswith("locks break stacks/a --apply`")
    assert main([*argv, "--format", "json"]) == 3
    listed = json.loads(capsys.readouterr().out)["locks"]
    assert [(e["key"], "unreadable" in e) for e in listed] == [
        ("stacks/b", False),
        ("stacks/a", True),
    ]
    FileLockBackend(locks).force_break("stacks/b")
    argv = ["stacks", "locks", "break", "stacks/a", "--repo", str(lock_repo)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("would break unreadable lock 'stacks/a': ")
    assert bad.exists()
    assert main([*argv, "--apply"]) == 0
    assert capsys.readouterr().out.startswith("broke unreadable lock 'stacks/a': ")
    assert not bad.exists()
    assert main(["stacks", "locks", "list", "--repo", str(lock_repo)]) == 0


def test_an_unreadable_lock_replaced_by_a_live_one_is_not_broken(lock_repo: Path) -> None:
    from shipsure.stacks.locks.breaking import BreakWriter, plan_break
    from shipsure.stacks.locks.interface import LockUnreadable

    locks = lock_repo / ".shipsure" / "locks"
    locks.mkdir(parents=True)
    (locks / "stacks%2Fa.lock.json").write_text("not json")
    backend = open_backend(f"file://{locks}")
    try:
        with pytest.raises(LockUnreadable) as unreadable:
            backend.get("stacks/a")
        planned = plan_break("stacks/a", unreadable.value)
        (locks / "stacks%2Fa.lock.json").unlink()
        backend.acquire("stacks/a", "runner-1", ttl=600)
        (outcome,) = plan.apply(planned, BreakWriter(backend), plan.Journal(lock_repo / "j"))
        assert outcome.result is plan.Result.REFUSED and "runner-1" in outcome.reason
        info = backend.get("stacks/a")
        assert info is not None and info.owner == "runner-1"
    finally:
        backend.close()
