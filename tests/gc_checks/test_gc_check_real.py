"""gc-check's deletion set equals, file for file, what the real collector deletes.

Each scenario is seeded, copied, collected by the real binary (Debian's docker-registry
2.8.2; distribution v3 built by scripts/peers.sh), and the files that vanished are compared
with the files gc-check's prediction covers. Where the real run fails, gc-check says it
aborts and predicts no deletion.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.gc.collect import predict
from shipsure.gc.tree import GCTree
from shipsure.storage.filesystem import FilesystemStorage

from . import seed


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "m"])
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("fault", sorted(seed.FAULTS))
def test_prediction_equals_real_run(
    tmp_path: Path, fault: str, version: int, delete_untagged: bool
) -> None:
    if not seed.available(version):
        pytest.skip(f"needs {seed.binary(version)} (scripts/setup.sh, scripts/peers.sh)")
    root = tmp_path / "storage"
    seed.seed(root, fault)
    before = seed.files(root)
    prediction = predict(GCTree(FilesystemStorage(root)), version, delete_untagged)
    real = seed.real_gc(root, version, delete_untagged, tmp_path)
    if real.returncode != 0:
        assert prediction.aborted, f"real run failed, gc-check did not say so:\n{real.output}"
    else:
        assert prediction.aborted is None, prediction.aborted
    predicted = seed.predicted_files(before, prediction)
    missed = sorted(real.deleted - predicted)
    extra = sorted(predicted - real.deleted)
    assert not missed and not extra, (
        f"missed {missed[:5]}, extra {extra[:5]}\n{real.output[-2000:]}"
    )


@pytest.mark.parametrize("how", ["missing", "a-file"])
@pytest.mark.parametrize("version", [2, 3])
def test_without_a_repositories_folder_nothing_is_deleted_or_called_garbage(
    tmp_path: Path, version: int, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both collectors stop ("failed to mark: ... repositories"): gc-check says so, shipsure's
    # gc plans nothing (every blob would look unneeded), and scan calls no blob garbage.
    if not seed.available(version):
        pytest.skip(f"needs {seed.binary(version)}")
    root = tmp_path / "storage"
    seed.seed(root, "clean")
    repositories = root / seed.V2 / "repositories"
    shutil.rmtree(repositories)
    if how == "a-file":
        repositories.write_text("not a folder")
    real = seed.real_gc(root, version, False, tmp_path)
    assert real.returncode != 0 and "failed to mark" in real.output
    assert real.deleted == set()
    prediction = predict(GCTree(FilesystemStorage(root)), version, False)
    assert prediction.aborted is not None and prediction.blobs == set()

    before = seed.files(root)
    assert main(["gc", str(root), "--min-age", "0", "--apply", "--force"]) == 3
    assert "repositories" in capsys.readouterr().err
    assert seed.files(root) == before
    report = scan(FilesystemStorage(root), ScanOptions(unreferenced_min_age=0, recheck_delay=0))
    assert "blob-unreferenced" not in {f.kind for f in report.findings}
    assert any(
        f.kind == "check-error" and f.details.get("unreferenced_not_reported")
        for f in report.findings
    )


@pytest.mark.parametrize("version", [2, 3])
def test_a_repository_linked_from_outside_the_root_is_unknown_not_an_abort(
    tmp_path: Path, version: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # The collector follows the link and runs; shipsure reads nothing outside the root, so
    # gc-check says it could not tell (check-error, exit 3), never "would stop".
    if not seed.available(version):
        pytest.skip(f"needs {seed.binary(version)}")
    root = tmp_path / "storage"
    seed.seed(root, "clean")
    repository = root / seed.V2 / "repositories" / "extra"
    shutil.move(repository, tmp_path / "outside")
    repository.symlink_to(tmp_path / "outside")
    real = seed.real_gc(root, version, False, tmp_path)
    assert real.returncode == 0, real.output[-2000:]
    argv = ["gc-check", "--registry-version", str(version), str(root), "--format", "json"]
    assert main(argv) == 3
    doc = json.loads(capsys.readouterr().out)
    kinds = {(f["kind"], f.get("storage_path")) for f in doc["findings"]}
    assert ("check-error", f"{seed.V2}/repositories/extra") in kinds
    assert "gc-would-abort" not in {k for k, _ in kinds}
