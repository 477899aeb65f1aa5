"""Scan and the real garbage collection agree on what a manifest references.

A Docker manifest listing a foreign layer (with `urls`) whose bytes were pushed as well, as
mirroring tools do: distribution's GC marks every listed digest (`Manifest.References()`),
so the blob stays, with and without `--delete-untagged`; scan must not call it unreferenced.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipsure import mediatypes as mt
from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.sandbox import images
from shipsure.sandbox.registry import REGISTRY_BINARY, SandboxRegistry, registry_available
from shipsure.storage import layout
from shipsure.storage.filesystem import FilesystemStorage

FOREIGN_URL = "https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256-layer"
# distribution v3.1.2, built by scripts/peers.sh; its GC is checked too when present.
V3_REGISTRY = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "registry"


@pytest.fixture
def foreign_registry() -> Iterator[SandboxRegistry]:
    """A registry that accepts foreign layers, as one serving Windows images is set up
    (distribution refuses every `urls` entry unless `validation.manifests.urls` allows it)."""
    if not registry_available():
        pytest.skip(f"needs {REGISTRY_BINARY} (Debian package docker-registry)")
    allow = {"validation": {"manifests": {"urls": {"allow": ["^https://"]}}}}
    with SandboxRegistry(extra_config=allow) as sandbox:
        yield sandbox


def _blob(seed: str, media_type: str = mt.DOCKER_LAYER) -> images.Blob:
    data = f"bytes of {seed}\n".encode() * 20
    return images.Blob(media_type, data, images.sha256_digest(data))


def _unreferenced(root: Path) -> set[str]:
    report = scan(FilesystemStorage(root), ScanOptions(unreferenced_min_age=0, recheck_delay=0))
    # After a GC, 2.8 leaves the deleted orphan's layer link behind, dangling.
    allowed = {k.BLOB_UNREFERENCED, k.LAYER_LINK_DANGLING}
    assert {f.kind for f in report.findings} <= allowed, report.findings
    return {f.digest for f in report.findings if f.kind == k.BLOB_UNREFERENCED and f.digest}


def _data(root: Path, digest: str) -> Path:
    return root / layout.blob_data(digest)


def test_pushed_foreign_layer_is_referenced_and_gc_keeps_it(
    foreign_registry: SandboxRegistry,
) -> None:
    reg, root = foreign_registry, foreign_registry.root
    layer = images.make_layer("own", kind="docker")
    foreign = _blob("foreign", mt.DOCKER_FOREIGN_LAYER)
    orphan = _blob("orphan")  # pushed, listed by nothing: the control
    config = images.make_config(
        "cfg", [layer], {"os": "windows", "architecture": "amd64"}, "docker"
    )
    with images.open_client(reg.url) as client:
        pusher = images._Pusher(client)
        for blob in (config, layer, foreign, orphan):
            pusher.push_blob("team/win", blob)
        pusher.push_manifest(
            "team/win",
            "ltsc",
            mt.DOCKER_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": mt.DOCKER_MANIFEST,
                "config": config.descriptor(),
                "layers": [{**foreign.descriptor(), "urls": [FOREIGN_URL]}, layer.descriptor()],
            },
        )
        # The same bytes listed by an untagged manifest only: -m deletes that manifest, and
        # then the blob is garbage.
        untagged_only = _blob("untagged-only", mt.DOCKER_FOREIGN_LAYER)
        pusher.push_blob("team/win", untagged_only)
        pusher.push_manifest(
            "team/win",
            None,
            mt.DOCKER_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": mt.DOCKER_MANIFEST,
                "config": config.descriptor(),
                "layers": [{**untagged_only.descriptor(), "urls": [FOREIGN_URL]}],
            },
        )

    assert _unreferenced(root) == {orphan.digest}
    v3 = V3_REGISTRY if V3_REGISTRY.exists() else None
    if v3 is not None:  # distribution v3's GC marks the same (dry runs: nothing changes)
        v3_config = root.parent / "v3-gc.json"
        v3_config.write_text(
            json.dumps({"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(root)}}})
        )
        for extra in ([], ["--delete-untagged"]):
            done = subprocess.run(
                [str(v3), "garbage-collect", "--dry-run", *extra, str(v3_config)],
                capture_output=True,
                text=True,
                timeout=120,
                env={k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
                check=False,
            )
            assert done.returncode == 0, done.stderr
            eligible = {
                line.rpartition(" ")[2]
                for line in done.stdout.splitlines()
                if "blob eligible for deletion" in line
            }
            assert foreign.digest not in eligible and orphan.digest in eligible
    dry = reg.garbage_collect(dry_run=True)
    assert dry.returncode == 0, dry.stderr
    assert f"marking blob {foreign.digest}" in dry.stdout

    plain = reg.garbage_collect()
    assert plain.returncode == 0, plain.stderr
    assert _data(root, foreign.digest).exists()
    assert _data(root, untagged_only.digest).exists()
    assert not _data(root, orphan.digest).exists()
    assert _unreferenced(root) == set()

    untagged = reg.garbage_collect(delete_untagged=True)
    assert untagged.returncode == 0, untagged.stderr
    assert _data(root, foreign.digest).exists()
    assert not _data(root, untagged_only.digest).exists()
    assert _unreferenced(root) == set()


def test_tag_link_ending_in_newline_on_the_real_registry(
    registry: SandboxRegistry, repo_name: str
) -> None:
    """A cleanup script wrote `current/link` with a newline: the registry cannot serve the
    tag; scan says malformed-link with the clean digest, not "revision missing"."""
    pushed = images.push_image(registry.url, repo_name, "v1")
    link = registry.root / layout.tag_current_link(repo_name, "v1")
    link.write_bytes(pushed.digest.encode() + b"\n")
    with images.open_client(registry.url) as client:
        got = client.get(f"/v2/{repo_name}/manifests/v1", headers={"Accept": mt.MANIFEST_ACCEPT})
    assert got.status_code >= 400
    report = scan(FilesystemStorage(registry.root), ScanOptions(recheck_delay=0))
    mine = [f for f in report.findings if f.repository == repo_name]
    assert [(f.kind, f.digest, f.reference) for f in mine] == [
        (k.MALFORMED_LINK, pushed.digest, "v1")
    ]
    assert mine[0].severity.label == "critical"


def test_empty_tag_folder_on_the_real_registry(registry: SandboxRegistry, repo_name: str) -> None:
    """The registry lists a tag whose folder is empty and answers 404 for it: scan reports
    tag-link-missing (its re-check took an empty folder for an absent one)."""
    images.push_image(registry.url, repo_name, "v1")
    (registry.root / layout.tag_dir(repo_name, "emptytag")).mkdir()
    with images.open_client(registry.url) as client:
        listed = client.get(f"/v2/{repo_name}/tags/list").json()["tags"]
        got = client.get(
            f"/v2/{repo_name}/manifests/emptytag", headers={"Accept": mt.MANIFEST_ACCEPT}
        )
    assert "emptytag" in listed and got.status_code == 404
    report = scan(FilesystemStorage(registry.root), ScanOptions(recheck_delay=0))
    mine = [f for f in report.findings if f.repository == repo_name]
    assert [(f.kind, f.reference) for f in mine] == [(k.TAG_LINK_MISSING, "emptytag")]


def test_verify_and_scan_agree_a_foreign_layer_is_not_pulled_from_the_registry(
    foreign_registry: SandboxRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """A foreign layer whose bytes were never pushed: a pull fetches it from its urls, so
    neither verify (over HTTP, --deep) nor scan (on storage) calls it missing."""
    reg = foreign_registry
    layer = images.make_layer("own", kind="docker")
    foreign = _blob("never-pushed", mt.DOCKER_FOREIGN_LAYER)
    config = images.make_config(
        "cfg", [layer], {"os": "windows", "architecture": "amd64"}, "docker"
    )
    with images.open_client(reg.url) as client:
        pusher = images._Pusher(client)
        for blob in (config, layer):
            pusher.push_blob("team/win", blob)
        pusher.push_manifest(
            "team/win",
            "ltsc",
            mt.DOCKER_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": mt.DOCKER_MANIFEST,
                "config": config.descriptor(),
                "layers": [{**foreign.descriptor(), "urls": [FOREIGN_URL]}, layer.descriptor()],
            },
        )
    assert main(["verify", "--deep", f"{reg.host}/team/win:ltsc"]) == 0
    assert "2 blobs" in capsys.readouterr().out  # the config and the own layer
    report = scan(FilesystemStorage(reg.root), ScanOptions(recheck_delay=0))
    assert report.findings == []
