"""Blobs pushed under another digest algorithm (sha512), and zero-byte blobs, on storage the
real registry wrote.

distribution stores a blob pushed as `sha512:<hex>` under its canonical sha256 digest
(blobs/sha256/...) and writes `_layers/sha512/<hex>/link` holding `sha256:<hex>`
(linkedblobstore.go linkBlob); it serves the blob by its sha512 digest from there. So:
- scan: that layout is sound (no "malformed link", "blob missing" or "unreferenced"); the
  blob is missing when the canonical data is gone.
- the real collectors mark the sha512 digest but sweep blobs by their sha256 folder: they
  delete the data and the image breaks (2.8 and 3.x; 3.x then stops removing the same layer
  link twice). gc-check says so, and shipsure's own gc keeps it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from shipsure import mediatypes as mt
from shipsure import plan as writes
from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.gc.predict import check
from shipsure.gc.safe import GCWriter, plan_gc
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.storage import layout
from shipsure.storage.filesystem import FilesystemStorage
from tests.gc_checks import seed

pytestmark = pytest.mark.both_registries

LAYER = b"a layer pushed under its sha512 digest" * 40


def _push(reg: SandboxRegistry) -> tuple[str, str, str]:
    """An image in `odd/app:v1` with a zero-byte layer and a layer pushed by its sha512
    digest. (manifest digest, sha512 digest, the sha256 digest of the same bytes)."""
    sha512 = "sha512:" + hashlib.sha512(LAYER).hexdigest()
    config = images.Blob(mt.OCI_CONFIG, b'{"architecture":"amd64","os":"linux"}', "")
    config = images.Blob(mt.OCI_CONFIG, config.data, images.sha256_digest(config.data))
    empty = images.Blob(mt.OCI_LAYER_GZIP, b"", images.sha256_digest(b""))
    big = images.Blob(mt.OCI_LAYER_GZIP, LAYER, sha512)
    with images.open_client(reg.url) as client:
        pusher = images._Pusher(client)
        for blob in (config, empty, big):
            pusher.push_blob("odd/app", blob)
        digest, _ = pusher.push_manifest(
            "odd/app",
            "v1",
            mt.OCI_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [empty.descriptor(), big.descriptor()],
            },
        )
        assert client.get(f"/v2/odd/app/blobs/{sha512}").content == LAYER
    return digest, sha512, images.sha256_digest(LAYER)


def _scan(root: Path) -> set[tuple[str, str | None]]:
    options = ScanOptions(verify_content=True, unreferenced_min_age=0, recheck_delay=0)
    return {(f.kind, f.digest) for f in scan(FilesystemStorage(root), options).findings}


def test_a_blob_pushed_under_sha512_is_sound_and_missing_when_its_data_is(
    fresh_registry: SandboxRegistry, tmp_path: Path
) -> None:
    reg = fresh_registry
    _, sha512, canonical = _push(reg)
    reg.stop()
    link = reg.root / layout.layer_link("odd/app", sha512)
    assert link.read_text() == canonical  # the layout this module is about
    assert _scan(reg.root) == set()

    root = tmp_path / "storage"
    shutil.copytree(reg.root, root)
    faults.remove_blob_data(root, canonical)
    faults.remove_layer_link(root, "odd/app", canonical)
    assert _scan(root) == {(k.BLOB_MISSING, sha512)}


def test_gc_check_names_the_tag_the_collector_breaks_and_gc_keeps_it(
    fresh_registry: SandboxRegistry, tmp_path: Path
) -> None:
    reg = fresh_registry
    _, sha512, canonical = _push(reg)
    reg.stop()
    version = 2 if reg.flavour == "2.8" else 3
    real = seed.real_gc(reg.root, version, False, tmp_path)
    # The collector deletes what odd/app:v1 needs.
    assert layout.blob_data(canonical) in real.deleted

    result = check(FilesystemStorage(reg.root), version, False)
    breaks = [f for f in result.report.findings if f.kind == "gc-breaks-tag"]
    assert [(f.reference, f.digest) for f in breaks] == [("v1", sha512)]
    assert result.prediction.blobs == {canonical}
    if version == 3:
        assert real.returncode == 1 and "failed to delete layer link" in real.output
        assert result.prediction.aborted is not None
        assert "failed to delete layer link" in result.prediction.aborted
    else:
        assert real.returncode == 0 and result.prediction.aborted is None

    made = plan_gc(FilesystemStorage(reg.root), min_age=0)
    assert json.dumps([a.target for a in made.plan.actions]).count(canonical[7:]) == 0


def test_gc_removes_both_links_of_a_blob_it_deletes(
    fresh_registry: SandboxRegistry, tmp_path: Path
) -> None:
    # The image is untagged: gc deletes its blobs, and with the sha512-pushed one both of its
    # layer links (leaving the sha512 one would make it dangle); a scan afterwards is clean.
    reg = fresh_registry
    _, sha512, canonical = _push(reg)
    reg.stop()
    shutil.rmtree(faults.tag_folder(reg.root, "odd/app", "v1"))
    storage = FilesystemStorage(reg.root)
    made = plan_gc(storage, min_age=0)
    links = {a.facts["digest"] for a in made.plan.actions if a.op == "delete-layer-link"}
    assert {sha512, canonical} <= links
    outcomes = writes.apply(made.plan, GCWriter(storage), writes.Journal(tmp_path / "j.jsonl"))
    assert {str(o.result) for o in outcomes} == {"done"}
    assert _scan(reg.root) == set()


def test_only_a_link_of_another_algorithm_may_name_the_canonical_digest() -> None:
    sha256, other256 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    sha512 = "sha512:" + "c" * 128
    assert layout.link_serves(sha256, sha256) == sha256
    assert layout.link_serves(sha512, sha256) == sha256  # how distribution links sha512
    assert layout.link_serves(sha256, other256) is None  # malformed
    assert layout.link_serves(sha256, sha512) is None  # never written: malformed
    assert layout.link_serves(sha512, None) is None
