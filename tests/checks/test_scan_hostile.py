"""`shipsure scan` on storage with odd files: folder symlink loops, FIFOs, sockets, devices
and empty tag folders. It finishes, says what it could not read (exit 3), and misses nothing.

Each scan runs as a child process with a generous timeout, so a hang fails the test instead
of hanging the suite (the timeout is a guard, not a speed assertion).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.findings import CHECK_ERROR
from shipsure.sandbox import faults
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate

SPEC = SyntheticSpec(repositories=3, tags=2, platforms=2, layers=1, layer_size=256)
GUARD_SECONDS = 300
SCAN = [sys.executable, "-m", "shipsure", "scan", "--recheck-delay=0", "--format", "json"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStorage:
    return generate(tmp_path_factory.mktemp("pristine"), SPEC)


@pytest.fixture
def tree(pristine: SyntheticStorage, tmp_path: Path) -> SyntheticStorage:
    root = tmp_path / "storage"
    shutil.copytree(pristine.root, root)
    return SyntheticStorage(root, pristine.tags, pristine.files, pristine.bytes, pristine.blobs)


def _scan(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [*SCAN, *args, str(root)],
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=False,
    )
    assert done.returncode in (0, 1, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


def _found(doc: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(f["kind"], f.get("digest") or f.get("storage_path")) for f in doc["findings"]}


def test_folder_symlink_loops_are_not_followed(tree: SyntheticStorage) -> None:
    repositories = tree.root / "docker/registry/v2/repositories"
    (repositories / "loopa").symlink_to(".")
    (repositories / "loopb").symlink_to(".")
    (repositories / "team0" / "up").symlink_to("..")
    code, doc = _scan(tree.root)
    assert code == 3
    assert doc["checked"]["repositories"] == 3
    errors = {f["storage_path"] for f in doc["findings"] if f["kind"] == CHECK_ERROR}
    assert errors == {
        "docker/registry/v2/repositories/loopa",
        "docker/registry/v2/repositories/loopb",
        "docker/registry/v2/repositories/team0/up",
    }
    assert all("symbolic link" in f["message"] for f in doc["findings"])


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_with_socket(path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    path.unlink()
    monkeypatch.chdir(path.parent)  # a socket path must be short: bind relative to it
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path.name)
    return server


@pytest.mark.parametrize("verify_content", [False, True])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_fifos_and_sockets_are_refused_without_blocking(
    tree: SyntheticStorage, monkeypatch: pytest.MonkeyPatch, verify_content: bool, workers: str
) -> None:
    root, repo = tree.root, tree.repositories[0]
    t = tree.tag(repo, "v0")
    manifest = t.children[0].digest
    layer = t.children[1].layers[-1]
    _replace_with_fifo(faults.blob_data_path(root, manifest))  # a manifest's data
    _replace_with_fifo(faults.blob_data_path(root, layer))  # a layer's data
    _replace_with_fifo(faults.tag_current_link_path(root, repo, "v1"))  # a tag link
    server = _replace_with_socket(
        faults.layer_link_path(root, repo, t.children[0].config), monkeypatch
    )
    try:
        args = ["--workers", workers] + (["--verify-content"] if verify_content else [])
        code, doc = _scan(root, *args)
    finally:
        server.close()
    assert code == 3
    errors = {f["storage_path"] for f in doc["findings"] if f["kind"] == CHECK_ERROR}
    v2 = "docker/registry/v2"
    assert {
        f"{v2}/blobs/sha256/{manifest[7:9]}/{manifest[7:]}/data",
        f"{v2}/blobs/sha256/{layer[7:9]}/{layer[7:]}/data",
        f"{v2}/repositories/{repo}/_manifests/tags/v1/current/link",
        f"{v2}/repositories/{repo}/_layers/sha256/{t.children[0].config[7:]}/link",
    } <= errors
    # Never "missing": a path that could not be read is a check-error and nothing else.
    assert not {f["kind"] for f in doc["findings"]} & {
        k.BLOB_MISSING,
        k.TAG_MANIFEST_MISSING,
        k.INDEX_CHILD_LOST,
        k.REVISION_DATA_MISSING,
    }
    messages = " ".join(f["message"] for f in doc["findings"] if f["kind"] == CHECK_ERROR)
    assert "a FIFO, not a regular file" in messages


def test_device_in_place_of_blob_data_is_not_hashed_forever(tree: SyntheticStorage) -> None:
    root, repo = tree.root, tree.repositories[1]
    layer = tree.tag(repo, "v0").children[0].layers[-1]
    data = faults.blob_data_path(root, layer)
    data.unlink()
    data.symlink_to("/dev/zero")
    code, doc = _scan(root, "--verify-content")
    # /dev/zero is outside the storage root: the link is the finding, nothing is read.
    assert code == 1
    outside = [f for f in doc["findings"] if f["kind"] == k.LINK_OUTSIDE_ROOT]
    assert [f["storage_path"] for f in outside] == [str(data.relative_to(root))]
    assert not [f for f in doc["findings"] if f["kind"] == CHECK_ERROR]


def test_empty_tag_folder_is_tag_link_missing(tree: SyntheticStorage) -> None:
    """The registry lists an empty tag folder and answers 404 for it (verify says
    tag-not-found); scan says tag-link-missing."""
    repo = tree.repositories[2]
    faults.tag_folder(tree.root, repo, "emptytag").mkdir()
    code, doc = _scan(tree.root)
    assert code == 1
    assert [(f["kind"], f["reference"], f["severity"]) for f in doc["findings"]] == [
        (k.TAG_LINK_MISSING, "emptytag", "critical")
    ]
