"""gc-check's deletion set equals, file for file, what the real collector deletes.

Each scenario is seeded, copied, collected by the real binary (Debian's docker-registry
2.8.2; distribution v3 built by scripts/peers.sh), and the files that vanished are compared
with the files gc-check's prediction covers. Where the real run fails, gc-check says it
aborts and predicts no deletion.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
