"""`scan --apply` as a writer: a kill at any point then a re-run ends consistent, nothing is
written into the current folder, and nothing is written or deleted through a symlink that
leaves the storage root."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from writer_helpers import run_shipsure, tree_digest

from shipsure import plan
from shipsure.checks.scan import repair
from shipsure.checks.scan.apply import RepairWriter, to_plan
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.sandbox import faults
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate
from shipsure.storage import layout
from shipsure.storage.filesystem import FilesystemStorage
from shipsure.storage.interface import StorageLinkOutsideError, StorageOutsideRootError

SPEC = SyntheticSpec(repositories=3, tags=2, platforms=2, layers=1, layer_size=256)
SCAN = ["scan", "--recheck-delay=0"]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStorage:
    """A tree with three repairs to make: a revision link, a layer link, a stale upload
    (with hash states, so its removal takes several steps)."""
    tree = generate(tmp_path_factory.mktemp("broken"), SPEC)
    root, repo = tree.root, tree.repositories[0]
    t = tree.tag(repo, "v0")
    faults.remove_revision_link(root, repo, t.children[0].digest)
    faults.remove_layer_link(root, repo, t.children[1].config)
    upload = faults.plant_stale_upload(root, repo)
    states = faults.upload_folder(root, repo, upload) / "hashstates" / "sha256"
    states.mkdir(parents=True)
    (states / "0").write_bytes(b"state")
    return tree


@pytest.fixture(scope="module")
def repaired(broken: SyntheticStorage, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tree after one uninterrupted `scan --apply`: what every re-run must end at."""
    root = tmp_path_factory.mktemp("clean") / "storage"
    shutil.copytree(broken.root, root, symlinks=True)
    state = root.parent / "state"
    done = run_shipsure([*SCAN, str(root), "--apply"], cwd=root.parent, state_home=state)
    assert done.returncode == 1, done.stderr  # the findings it repaired are still reported
    assert done.stdout.count("done ") == 3
    return tree_digest(root)


def _copy(broken: SyntheticStorage, tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    shutil.copytree(broken.root, root, symlinks=True)
    return root


@pytest.mark.parametrize("point", plan.CRASH_POINTS)
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_killed_at_any_point_then_rerun_ends_consistent(
    broken: SyntheticStorage, repaired: dict[str, str], tmp_path: Path, point: str, nth: int
) -> None:
    root, state = _copy(broken, tmp_path), tmp_path / "state"
    args = [*SCAN, str(root), "--apply"]
    killed = run_shipsure(args, cwd=tmp_path, state_home=state, crash=f"{point}:{nth}")
    assert killed.returncode == 137, killed.stderr
    rerun = run_shipsure(args, cwd=tmp_path, state_home=state)
    assert rerun.returncode in (0, 1), rerun.stderr
    assert tree_digest(root) == repaired
    journal = plan.Journal(state / "shipsure" / "scan-journal.jsonl")
    assert journal.open_intents("scan-repair") == []
    final = scan(FilesystemStorage(root), ScanOptions(recheck_delay=0.0))
    assert final.findings == []


def test_a_removal_cut_short_is_finished_by_the_next_run(
    broken: SyntheticStorage, tmp_path: Path
) -> None:
    # Killed inside the removal: the data is gone, `startedat` (removed last) is not.
    root = _copy(broken, tmp_path)
    repo = broken.repositories[0]
    (folder,) = (root / layout.uploads_dir(repo)).iterdir()
    shutil.rmtree(folder / "hashstates")
    (folder / "data").unlink()
    report = scan(FilesystemStorage(root), ScanOptions(recheck_delay=0.0))
    actions = [a for a in repair.plan_repairs(report.findings) if a.op == repair.REMOVE_UPLOAD]
    writer = RepairWriter(FilesystemStorage(root), upload_max_age=7 * 86400)
    (outcome,) = plan.apply(to_plan(actions), writer, plan.Journal(tmp_path / "j.jsonl"))
    assert outcome.result is plan.Result.DONE and not folder.exists()


def test_scan_apply_writes_nothing_into_the_current_folder(
    broken: SyntheticStorage, tmp_path: Path
) -> None:
    root, cwd, state = _copy(broken, tmp_path), tmp_path / "cwd", tmp_path / "state"
    cwd.mkdir()
    done = run_shipsure([*SCAN, str(root), "--apply"], cwd=cwd, state_home=state)
    assert done.returncode == 1, done.stderr
    assert list(cwd.iterdir()) == []
    assert f"journal: {state / 'shipsure' / 'scan-journal.jsonl'}" in done.stdout
    # Without --apply nothing is written anywhere, the state folder included.
    state2 = tmp_path / "state2"
    assert run_shipsure([*SCAN, str(root)], cwd=cwd, state_home=state2).returncode == 0
    assert list(cwd.iterdir()) == [] and not state2.exists()


def _outside_upload(tmp_path: Path) -> Path:
    """A folder outside the storage root holding an upload from 2020, and a sentinel."""
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    (outside / "precious" / "startedat").write_text("2020-01-01T00:00:00Z")
    (outside / "precious" / "data").write_bytes(b"precious bytes")
    (outside / "sentinel").write_text("do not touch")
    return outside


def test_scan_apply_never_deletes_through_a_link_leaving_the_root(
    broken: SyntheticStorage, tmp_path: Path
) -> None:
    root, state = _copy(broken, tmp_path), tmp_path / "state"
    outside = _outside_upload(tmp_path)
    before = tree_digest(outside)
    other = root / layout.repository_dir("other")
    other.mkdir(parents=True)
    (other / "_uploads").symlink_to(outside)

    done = run_shipsure(
        [*SCAN, str(root), "--apply", "--format", "json"], cwd=tmp_path, state_home=state
    )
    assert done.returncode in (1, 3), done.stderr
    assert tree_digest(outside) == before
    assert (other / "_uploads").is_symlink()
    repairs = json.loads(done.stdout).get("repairs", [])
    for r in repairs:
        if r["facts"]["repository"] == "other":
            # Planned by a scan that read through the link: refused, the link named.
            assert r["result"] == "refused"
            assert "repositories/other/_uploads is a symlink to" in r["reason"]


LAYOUT_FOLDERS = ["_uploads", "_layers", "_manifests", "repository", "repositories", "v2"]


@pytest.mark.parametrize("folder", [*LAYOUT_FOLDERS, "blobs"])
def test_scan_apply_with_a_layout_folder_linked_outside_changes_nothing_there(
    broken: SyntheticStorage, tmp_path: Path, folder: str
) -> None:
    root = _copy(broken, tmp_path)
    repo = broken.repositories[0]  # the one with the three repairs
    paths = {
        "_uploads": layout.uploads_dir(repo),
        "_layers": f"{layout.repository_dir(repo)}/_layers",
        "_manifests": f"{layout.repository_dir(repo)}/_manifests",
        "repository": layout.repository_dir(repo),
        "repositories": layout.REPOSITORIES,
        "v2": layout.V2,
        "blobs": layout.BLOBS,
    }
    linked, outside = root / paths[folder], tmp_path / "outside"
    shutil.move(linked, outside)
    linked.symlink_to(outside)
    (outside / "sentinel").write_text("do not touch")
    before = tree_digest(outside)

    done = run_shipsure(
        [*SCAN, str(root), "--apply", "--format", "json"],
        cwd=tmp_path,
        state_home=tmp_path / "state",
    )
    assert done.returncode in (1, 3), done.stderr
    assert tree_digest(outside) == before
    assert linked.is_symlink()
    for r in json.loads(done.stdout).get("repairs", []):
        if r["result"] != "refused":
            # Done inside the root, on evidence read inside the root.
            assert not r["target"].startswith(paths[folder])
            assert folder != "blobs" or r["op"] == "remove-upload"
        else:
            assert f"{paths[folder]} is a symlink to {outside}" in r["reason"]


@pytest.mark.parametrize("folder", LAYOUT_FOLDERS)
def test_every_layout_folder_linked_outside_is_refused(
    broken: SyntheticStorage, tmp_path: Path, folder: str
) -> None:
    root = _copy(broken, tmp_path)
    repo = broken.repositories[1]
    t = broken.tag(repo, "v0")
    paths = {
        "_uploads": layout.uploads_dir(repo),
        "_layers": f"{layout.repository_dir(repo)}/_layers",
        "_manifests": f"{layout.repository_dir(repo)}/_manifests",
        "repository": layout.repository_dir(repo),
        "repositories": layout.REPOSITORIES,
        "v2": layout.V2,
    }
    linked = root / paths[folder]
    outside = tmp_path / "outside"
    linked.mkdir(parents=True, exist_ok=True)
    shutil.move(linked, outside)  # the real content now lives outside the root...
    linked.symlink_to(outside)  # ...behind a link
    (outside / "sentinel").write_text("do not touch")
    before = tree_digest(outside)
    storage = FilesystemStorage(root)
    digest, config = t.children[0].digest, t.children[0].config
    actions = [
        plan.Action(repair.LINK_REVISION, layout.revision_link(repo, digest), "t", {}),
        plan.Action(repair.LINK_LAYER, layout.layer_link(repo, config), "t", {}),
        plan.Action(repair.REMOVE_UPLOAD, layout.upload_dir(repo, "precious"), "t", {}),
        plan.Action(repair.REMOVE_LAYER_LINK, layout.layer_link_dir(repo, config), "t", {}),
    ]
    for action in actions:
        facts = {"repository": repo, "subject": digest}
        action = plan.Action(action.op, action.target, action.because, facts)
        writer = RepairWriter(storage, upload_max_age=0)
        pre = writer.check(action)
        if paths[folder] in action.target or action.target.startswith(paths[folder]):
            assert isinstance(pre, plan.Refused), action
            assert f"{paths[folder]} is a symlink to {outside}" in pre.reason
            # The driver refuses too, whatever a caller planned: the write or delete, or
            # already the listing of what to delete.
            with pytest.raises((StorageOutsideRootError, StorageLinkOutsideError)):
                writer.run(action)
    assert tree_digest(outside) == before


def test_a_link_that_stays_inside_the_root_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    (root / "real").mkdir(parents=True)
    (root / "alias").symlink_to("real")
    storage = FilesystemStorage(root)
    assert storage.outside_root("alias/x") is None
    storage.write_atomic("alias/x", b"ok")
    assert (root / "real" / "x").read_bytes() == b"ok"
    assert storage.outside_root("../x") is not None
