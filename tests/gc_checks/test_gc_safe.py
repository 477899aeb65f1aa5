"""`shipsure gc`: keeps everything a kept tag, index or referrer needs, removes the rest,
refuses while a registry serves the storage read-write, and survives being killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.gc.reach import Reachability
from shipsure.gc.safe import plan_gc
from shipsure.gc.tree import GCTree
from shipsure.sandbox.registry import SandboxRegistry, registry_available
from shipsure.sandbox.synthetic import SyntheticSpec, generate
from shipsure.storage.filesystem import FilesystemStorage
from shipsure.storage.inventory import discover_repositories

from . import seed

ROOT = Path(__file__).resolve().parents[2]


def needs(root: Path) -> dict[str, tuple[bool, frozenset[tuple[str, str]]]]:
    """tag -> (intact, the (kind, digest) it needs that are present now)."""
    storage = FilesystemStorage(root)
    reach = Reachability(GCTree(storage))
    return {
        f"{t.repository}:{t.tag}": (
            t.intact,
            frozenset((n.kind, n.digest) for n in t.needs if n.present),
        )
        for t in reach.all_tags(discover_repositories(storage, []))
    }


def _assert_kept(before: dict[str, tuple[bool, frozenset[tuple[str, str]]]], root: Path) -> None:
    after = needs(root)
    assert before.keys() == after.keys()
    for tag, (_, present) in before.items():
        lost = present - after[tag][1]
        assert not lost, f"{tag} lost {sorted(lost)[:3]}"


@pytest.mark.parametrize("fault", sorted(seed.FAULTS))
def test_gc_keeps_what_tags_need_and_removes_the_rest(tmp_path: Path, fault: str) -> None:
    root = tmp_path / "storage"
    seed.seed(root, fault)
    if fault == "invalid-repository-name":
        pass  # shipsure collects it like any other repository
    before = needs(root)
    state = tmp_path / "state"
    code = main(
        [
            "gc",
            str(root),
            "--apply",
            "--force",
            "--min-age",
            "0",
            "--journal",
            str(state / "gc.jsonl"),
        ]
    )
    assert code == 0
    _assert_kept(before, root)
    again = plan_gc(FilesystemStorage(root), min_age=0)
    assert again.plan.actions == []


def test_gc_removes_the_untagged_image_and_keeps_referrers(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    s = seed.seed(root, "old-revision-data-missing")
    old = s.synthetic.tags[0].index
    made = plan_gc(FilesystemStorage(root), min_age=0)
    targets = {a.target for a in made.plan.actions}
    assert any(old[7:] in t and "revisions" in t for t in targets)
    assert made.bytes_freed > 0
    # The untagged signatures name a tagged subject: kept.
    assert not any(
        a.op == "delete-revision"
        and a.facts.get("repository") == "extra/app"
        and "old" in a.because
        for a in made.plan.actions
    )


def test_young_content_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    seed.seed(root, "tag-folders-deleted")
    assert plan_gc(FilesystemStorage(root), min_age=3600).plan.actions == []
    assert plan_gc(FilesystemStorage(root), min_age=0).plan.actions


def _gc_process(root: Path, journal: Path, crash: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SHIPSURE_TEST_CRASH_AT", None)
    if crash:
        env["SHIPSURE_TEST_CRASH_AT"] = crash
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipsure",
            "gc",
            str(root),
            "--apply",
            "--force",
            "--min-age",
            "0",
            "--journal",
            str(journal),
            "--format",
            "json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("point", ["after-intent", "after-run", "before-intent"])
def test_killed_at_random_points_and_rerun_loses_nothing(tmp_path: Path, point: str) -> None:
    rng = random.Random(point)
    for attempt in range(3):
        root = tmp_path / f"storage{attempt}"
        seed.seed(root, "tag-folders-deleted")
        before = needs(root)
        total = len(plan_gc(FilesystemStorage(root), min_age=0).plan.actions)
        journal = tmp_path / f"gc{attempt}.jsonl"
        nth = rng.randint(1, total)
        first = _gc_process(root, journal, f"{point}:{nth}")
        assert first.wait(timeout=60) == 137
        _assert_kept(before, root)
        second = _gc_process(root, journal, None)
        assert second.wait(timeout=60) == 0
        _assert_kept(before, root)
        assert plan_gc(FilesystemStorage(root), min_age=0).plan.actions == []


def test_sigkill_mid_run_then_rerun_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    generate(root, SyntheticSpec(repositories=6, tags=4, platforms=2, layers=2, teams=0))
    # Make most of it garbage: drop the tag folders of all but the first tag of each repo.
    repos = root / "docker/registry/v2/repositories"
    for repo in repos.iterdir():
        for tag in (repo / "_manifests" / "tags").iterdir():
            if tag.name != "v0":
                import shutil

                shutil.rmtree(tag)
    before = needs(root)
    rng = random.Random(7)
    for _ in range(3):
        process = _gc_process(root, tmp_path / "gc.jsonl", None)
        time.sleep(rng.uniform(0.05, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        _assert_kept(before, root)
    final = _gc_process(root, tmp_path / "gc.jsonl", None)
    assert final.wait(timeout=120) == 0
    _assert_kept(before, root)
    assert plan_gc(FilesystemStorage(root), min_age=0).plan.actions == []


@pytest.mark.skipif(not registry_available(), reason="needs docker-registry (scripts/setup.sh)")
def test_refuses_while_a_registry_serves_the_storage_read_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"
    seed.seed(root, "tag-folders-deleted")
    argv = ["gc", str(root), "--apply", "--min-age", "0", "--journal", str(tmp_path / "j")]
    with SandboxRegistry(root):
        assert main(argv) == 3
        assert "serves" in capsys.readouterr().err
    with SandboxRegistry(root, readonly=True):
        assert main(argv) == 0


def test_a_repository_without_its_tags_folder_is_not_collected(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    s = seed.seed(root, "tags-folder-gone")
    repo = s.synthetic.tags[0].repository
    made = plan_gc(FilesystemStorage(root), min_age=0)
    assert not [a for a in made.plan.actions if a.facts.get("repository") == repo]
    assert any(repo in note and "tags folder" in note for note in made.plan.notes)


def test_a_deletion_refused_since_the_plan_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blob written again between the plan and its deletion is kept (refused); the run
    did less than it printed, so it exits 1, not 0 (retain and scan --apply alike)."""
    import shipsure.gc.safe as safe

    root = tmp_path / "storage"
    seed.seed(root, "tag-folders-deleted")
    planned = safe.plan_gc

    def plan_then_write(*args: object, **kwargs: object) -> safe.GCPlan:
        made = planned(*args, **kwargs)  # type: ignore[arg-type]
        blob = next(a for a in made.plan.actions if a.op == "delete-blob")
        data = root / blob.target / "data"
        os.utime(data, (time.time() + 60, time.time() + 60))
        return made

    monkeypatch.setattr(safe, "plan_gc", plan_then_write)
    argv = ["gc", str(root), "--apply", "--min-age", "0", "--journal", str(tmp_path / "j")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "the blob was written again since the plan" in out, out
