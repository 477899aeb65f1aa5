"""`scan --verify-content` with the blob store hashed in another process: the same findings
as hashing in the walk, and the in-walk hashing whenever that process is not available."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.findings import Report
from shipsure.model import DIGEST_ALGORITHMS
from shipsure.sandbox import faults
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate
from shipsure.storage import blob_hasher
from shipsure.storage.filesystem import FilesystemStorage

SPEC = SyntheticSpec(repositories=3, tags=2, platforms=2, layers=1, layer_size=256)


def _scan(root: Path) -> Report:
    options = ScanOptions(verify_content=True, recheck_delay=0.0, unreferenced_min_age=0)
    return scan(FilesystemStorage(root), options)


def _shape(report: Report) -> list[tuple[str, str | None, str | None, str]]:
    return sorted(
        (f.kind, f.repository, f.digest, repr(sorted(f.details.items()))) for f in report.findings
    )


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStorage:
    tree = generate(tmp_path_factory.mktemp("hasher"), SPEC)
    repo = tree.repositories[2]
    children = tree.tag(repo, "v0").children
    faults.corrupt_blob(tree.root, children[1].layers[1])  # same size, wrong bytes
    faults.corrupt_blob(tree.root, children[0].config)
    faults.corrupt_manifest(tree.root, tree.tag(repo, "v1").children[1].digest)
    return tree


def test_the_child_names_exactly_the_corrupt_blobs(broken: SyntheticStorage) -> None:
    out = io.StringIO()
    blob_hasher.hash_store(str(broken.root), dict(DIGEST_ALGORITHMS), out)
    repo = broken.repositories[2]
    children = broken.tag(repo, "v0").children
    named = {line.split("\t")[1] for line in out.getvalue().splitlines()}
    corrupt_manifest = broken.tag(repo, "v1").children[1].digest
    assert named == {children[1].layers[1], children[0].config, corrupt_manifest}
    assert all(line.startswith("mismatch\t") for line in out.getvalue().splitlines())


def test_findings_equal_those_of_hashing_in_the_walk(
    broken: SyntheticStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_child = _scan(broken.root)
    repo = broken.repositories[2]
    mismatches = {f.digest for f in in_child.findings if f.kind == k.BLOB_DIGEST_MISMATCH}
    children = broken.tag(repo, "v0").children
    assert mismatches == {children[1].layers[1], children[0].config}
    monkeypatch.setattr(blob_hasher, "start", lambda root, algorithms: None)  # no process can start
    in_walk = _scan(broken.root)
    assert _shape(in_child) == _shape(in_walk)
    assert in_child.checked == in_walk.checked


def test_an_incomplete_child_falls_back_to_hashing_in_the_walk(
    broken: SyntheticStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _shape(_scan(broken.root))
    monkeypatch.setattr(blob_hasher.BackgroundHasher, "result", lambda self: None)
    assert _shape(_scan(broken.root)) == expected


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_blob_is_a_check_error_not_a_mismatch(
    broken: SyntheticStorage, tmp_path: Path
) -> None:
    root = tmp_path / "storage"
    shutil.copytree(broken.root, root)
    layer = broken.tag(broken.repositories[0], "v0").children[0].layers[1]
    data = root / "docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
    data.chmod(0)
    out = io.StringIO()
    blob_hasher.hash_store(str(root), dict(DIGEST_ALGORITHMS), out)
    assert f"error\t{layer}\t" in out.getvalue()
    errors = [f for f in _scan(root).findings if f.kind == "check-error"]
    assert [f.details["storage_path"] for f in errors] == [
        f"docker/registry/v2/blobs/sha256/{layer[7:9]}/{layer[7:]}/data"
    ]
