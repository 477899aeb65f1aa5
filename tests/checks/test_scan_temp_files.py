"""Temp files an interrupted write left (shipsure's `.<name>.<random>.tmp`, distribution's
`<name>.<uuid>.tmp`) beside a missing link or blob data: reported once older than an hour,
removed by `scan --apply` through shipsure.plan with the precondition re-checked; a young
one (a write may be under way) is left alone."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from writer_helpers import run_shipsure

from shipsure import plan
from shipsure.checks.scan import kinds as k
from shipsure.checks.scan import repair
from shipsure.checks.scan.apply import RepairWriter
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.sandbox import faults
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate
from shipsure.storage import layout
from shipsure.storage.filesystem import FilesystemStorage

SPEC = SyntheticSpec(repositories=1, tags=1, platforms=2, layers=1, layer_size=128)
OPTIONS = ScanOptions(recheck_delay=0, workers=1)
OLD = time.time() - 2 * layout.TEMP_MAX_AGE


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStorage:
    return generate(tmp_path_factory.mktemp("pristine"), SPEC)


@pytest.fixture
def root(pristine: SyntheticStorage, tmp_path: Path) -> Path:
    copy = tmp_path / "storage"
    shutil.copytree(pristine.root, copy)
    return copy


def _plant(root: Path, path: str, *, old: bool = True) -> Path:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"sha256:cut")
    if old:
        os.utime(file, (OLD, OLD))
    return file


def test_names() -> None:
    assert layout.is_temp_name(".link.ab_x91zq.tmp")
    assert layout.is_temp_name("link.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp")
    assert layout.is_temp_name("data.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp")
    assert not layout.is_temp_name("link")
    assert not layout.is_temp_name("notes.tmp")


def test_old_temp_files_are_reported_and_removed_young_ones_kept(
    pristine: SyntheticStorage, root: Path, tmp_path: Path
) -> None:
    repo = pristine.repositories[0]
    t = pristine.tag(repo, "v0")
    child, layer = t.children[0].digest, t.children[0].layers[-1]
    # A relink cut short before its rename: the folder has the temp file, not the link.
    faults.remove_revision_link(root, repo, child)
    ours = layout.revision_link_dir(repo, child) + "/.link.k2j4h5g6.tmp"
    # The registry's PutContent cut short on a layer link, and on a manifest's data.
    faults.remove_layer_link(root, repo, layer)
    theirs = layout.layer_link_dir(repo, layer) + "/link.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp"
    young = layout.revision_link_dir(repo, child) + "/.link.young000.tmp"
    orphan = "sha256:" + "ab" * 32
    (root / layout.blob_dir(orphan)).mkdir(parents=True)
    blob_tmp = layout.blob_dir(orphan) + "/data.0b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp"
    for path in (ours, theirs, blob_tmp):
        _plant(root, path)
    _plant(root, young, old=False)

    report = scan(FilesystemStorage(root), OPTIONS)
    stale = {f.details["storage_path"] for f in report.findings if f.kind == k.TEMP_FILE_STALE}
    assert stale == {ours, theirs, blob_tmp}
    actions = [a for a in repair.plan_repairs(report.findings) if a.op == repair.REMOVE_TEMP_FILE]
    assert {a.path for a in actions} == stale

    done = run_shipsure(
        ["scan", "--recheck-delay=0", str(root), "--apply"],
        cwd=tmp_path,
        state_home=tmp_path / "state",
    )
    assert done.returncode == 1, done.stderr
    for path in (ours, theirs, blob_tmp):
        assert not (root / path).exists()
    assert (root / young).exists()
    assert (root / layout.revision_link(repo, child)).exists()  # and the relink was made


def test_the_precondition_is_rechecked(root: Path, tmp_path: Path) -> None:
    storage = FilesystemStorage(root)
    folder = root / "docker/registry/v2/x"
    folder.mkdir()
    path = "docker/registry/v2/x/.link.abcdefgh.tmp"
    writer = RepairWriter(storage, upload_max_age=0)
    action = plan.Action(repair.REMOVE_TEMP_FILE, path, "t", {"repository": "", "subject": ""})
    assert isinstance(writer.check(action), plan.AlreadyDone)  # gone
    file = _plant(root, path, old=False)
    assert isinstance(writer.check(action), plan.Refused)  # young again
    os.utime(file, (OLD, OLD))
    assert isinstance(writer.check(action), plan.Ready)
    file.unlink()
    os.mkfifo(file)
    os.utime(file, (OLD, OLD))
    assert isinstance(writer.check(action), plan.Refused)  # not a regular file
    file.unlink()
    outside = tmp_path / "outside-file"
    outside.write_text("keep")
    os.utime(outside, (OLD, OLD))
    file.symlink_to(outside)
    assert isinstance(writer.check(action), plan.Refused)  # a link leaving the root
    assert outside.exists()
