"""`lint --fix --apply` as a writer: symlinks never replaced, a kill at any point then a
re-run ends consistent, nothing written into the current folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from writer_helpers import run_shipsure, tree_digest

from shipsure import plan
from shipsure.cli.main import main
from shipsure.sandbox.images import push_image
from shipsure.sandbox.registry import SandboxRegistry


@pytest.fixture
def image(registry: SandboxRegistry, repo_name: str) -> tuple[str, str]:
    """(floating reference, its pinned form) of an image pushed to the real registry."""
    pushed = push_image(registry.url, repo_name, "1", seed="fix-apply")
    ref = f"{registry.host}/{repo_name}:1"
    return ref, f"{ref}@{pushed.digest}"


def test_symlinked_dockerfiles_edit_the_target_once_and_never_leave_the_repository(
    tmp_path: Path, image: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, pinned = image
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)  # the repository's boundary
    (root / "docker").mkdir()
    (root / "docker" / "base.Dockerfile").write_text(f"FROM {ref}\nRUN true\n")
    # Two links to one file inside the repository...
    (root / "Dockerfile").symlink_to("docker/base.Dockerfile")
    (root / "svc").mkdir()
    (root / "svc" / "Dockerfile").symlink_to("../docker/base.Dockerfile")
    # ...and one to a file outside it.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "Dockerfile").write_text(f"FROM {ref}\n")
    (root / "ext").mkdir()
    (root / "ext" / "Dockerfile").symlink_to(outside / "Dockerfile")
    outside_before = tree_digest(outside)
    journal = tmp_path / "j.jsonl"

    assert main(["lint", "--fix", "--format", "json", str(root)]) == 1
    planned = json.loads(capsys.readouterr().out)
    assert [a["target"] for a in planned["plan"]["actions"]] == [
        os.path.realpath(root / "docker" / "base.Dockerfile")
    ]
    edits = {Path(c["file"]).relative_to(root).as_posix(): c["edits"] for c in planned["changes"]}
    assert edits == {
        "Dockerfile": "docker/base.Dockerfile",
        "docker/base.Dockerfile": "",
        "svc/Dockerfile": "../docker/base.Dockerfile",
    }
    (skipped,) = planned["unresolved"]
    assert (
        skipped["file"].endswith("ext/Dockerfile") and "outside the repository" in skipped["reason"]
    )

    code = main(["lint", "--fix", "--apply", "--journal", str(journal), str(root)])
    assert code == 3  # the pin that could not be made
    capsys.readouterr()
    assert (root / "docker" / "base.Dockerfile").read_text() == f"FROM {pinned}\nRUN true\n"
    for link in ("Dockerfile", "svc/Dockerfile", "ext/Dockerfile"):
        assert (root / link).is_symlink(), link
    assert tree_digest(outside) == outside_before
    states = [json.loads(line)["state"] for line in journal.read_text().splitlines()]
    assert states == ["intent", "done"]  # edited once


def test_a_target_swapped_for_a_symlink_after_planning_is_refused(tmp_path: Path) -> None:
    from shipsure.lint.fix import FileEdit, FixPlan, FixStep, apply_plan

    real, other = tmp_path / "Dockerfile", tmp_path / "other"
    other.write_text("FROM x\n")
    real.symlink_to(other)
    step = FixStep(str(real), 1, "x", "x:1@sha256:" + "0" * 64)
    fix = FixPlan([step], [FileEdit(str(real), (str(real),), "0" * 64, "1" * 64, (step,))])
    result = apply_plan(fix, tmp_path / "j.jsonl")
    assert "symlink" in result.skipped[0][1]
    assert real.is_symlink() and other.read_text() == "FROM x\n"


def _two_file_repo(root: Path, ref: str) -> None:
    root.mkdir()
    (root / "Dockerfile").write_text(f"FROM {ref}\n")
    (root / "compose.yaml").write_text(f"services:\n  a:\n    image: {ref}\n")


@pytest.mark.parametrize("point", plan.CRASH_POINTS)
@pytest.mark.parametrize("nth", [1, 2])
def test_killed_at_any_point_then_rerun_ends_consistent(
    tmp_path: Path, image: tuple[str, str], point: str, nth: int
) -> None:
    ref, pinned = image
    root, state = tmp_path / "repo", tmp_path / "state"
    _two_file_repo(root, ref)
    args = ["lint", "--fix", "--apply", str(root)]

    killed = run_shipsure(args, cwd=tmp_path, state_home=state, crash=f"{point}:{nth}")
    assert killed.returncode == 137, killed.stderr
    rerun = run_shipsure(args, cwd=tmp_path, state_home=state)
    assert rerun.returncode == 0, rerun.stderr

    assert (root / "Dockerfile").read_text() == f"FROM {pinned}\n"
    assert (root / "compose.yaml").read_text() == f"services:\n  a:\n    image: {pinned}\n"
    assert sorted(p.name for p in root.iterdir()) == ["Dockerfile", "compose.yaml"]  # no temp
    journal = plan.Journal(state / "shipsure" / "lint-fix.jsonl")
    assert journal.open_intents("lint-fix") == []


def test_apply_writes_nothing_into_the_current_folder(
    tmp_path: Path, image: tuple[str, str]
) -> None:
    ref, pinned = image
    root, cwd, state = tmp_path / "repo", tmp_path / "cwd", tmp_path / "state"
    _two_file_repo(root, ref)
    cwd.mkdir()
    done = run_shipsure(["lint", "--fix", "--apply", str(root)], cwd=cwd, state_home=state)
    assert done.returncode == 0, done.stderr
    assert (root / "Dockerfile").read_text() == f"FROM {pinned}\n"
    assert list(cwd.iterdir()) == []
    assert (state / "shipsure" / "lint-fix.jsonl").is_file()
