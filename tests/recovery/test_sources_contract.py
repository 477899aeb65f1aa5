"""One contract for every content source: registry, OCI layout, docker save archive."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipsure.errors import UsageError
from shipsure.model import Digest
from shipsure.recovery import open_source
from shipsure.recovery.content import VerifiedBlob, fetch_blob, fetch_manifest
from shipsure.recovery.interface import ContentSource, SourceError
from shipsure.registry import open_registry
from shipsure.sandbox import images
from shipsure.sandbox.images import PushedIndex
from shipsure.sandbox.registry import SandboxRegistry

from .conftest import copy_all_out, require_registry, require_skopeo

UNKNOWN = Digest("sha256", "0" * 64)


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[SandboxRegistry, PushedIndex, Path]]:
    require_registry()
    require_skopeo()
    with SandboxRegistry() as registry:
        index = images.push_index(registry.url, "team/app", "latest")
        # The same image under a prefix, as a mirror that keeps copies under `mirror/` would.
        images.push_index(registry.url, "mirror/team/app", "latest", seed="team/app:latest")
        folder = Path(registry.workdir) / "copies"
        folder.mkdir()
        layout = folder / "layout"
        copy_all_out(registry.host, "team/app", layout)
        archive = folder / "saved.tar"
        with tarfile.open(archive, "w") as tar:
            for path in sorted(layout.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
            data = json.dumps([{"RepoTags": ["team/app:latest"]}]).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        yield registry, index, folder


@pytest.fixture(params=["registry", "registry-prefix", "oci", "docker-archive"])
def source(
    request: pytest.FixtureRequest, seeded: tuple[SandboxRegistry, PushedIndex, Path]
) -> Iterator[ContentSource]:
    registry, _, folder = seeded
    spec = {
        "registry": registry.host,
        "registry-prefix": f"{registry.host}/mirror",
        "oci": f"oci:{folder / 'layout'}",
        "docker-archive": f"docker-archive:{folder / 'saved.tar'}",
    }[request.param]
    opened = open_source(spec, open_registry)
    yield opened
    opened.close()


def test_resolves_the_tag_to_the_index_digest(
    source: ContentSource, seeded: tuple[SandboxRegistry, PushedIndex, Path]
) -> None:
    index = seeded[1]
    assert source.resolve_tag("team/app", "latest") == Digest.parse(index.digest)
    assert source.resolve_tag("team/app", "no-such-tag") is None
    assert source.preserves_manifests


def test_manifests_come_back_byte_for_byte(
    source: ContentSource, seeded: tuple[SandboxRegistry, PushedIndex, Path]
) -> None:
    index = seeded[1]
    for image in [index, *index.children]:
        found = fetch_manifest([source], "team/app", Digest.parse(image.digest), image.size)
        assert isinstance(found, tuple)
        assert found[0].raw == image.raw
    assert source.manifest("team/app", UNKNOWN) is None
    assert fetch_manifest([source], "team/app", UNKNOWN) is None


def test_blobs_come_back_verified(
    source: ContentSource, seeded: tuple[SandboxRegistry, PushedIndex, Path]
) -> None:
    child = seeded[1].children[0]
    for blob in [child.config, *child.layers]:
        digest = Digest.parse(blob.digest)
        assert source.has_blob("team/app", digest)
        fetched = fetch_blob([source], "team/app", digest, blob.size)
        assert isinstance(fetched, VerifiedBlob)
        assert fetched.content.read() == blob.data
        fetched.close()
    assert not source.has_blob("team/app", UNKNOWN)
    assert fetch_blob([source], "team/app", UNKNOWN, 10) is None


def test_a_copy_of_the_wrong_size_is_rejected(
    source: ContentSource, seeded: tuple[SandboxRegistry, PushedIndex, Path]
) -> None:
    layer = seeded[1].children[0].layers[0]
    found = fetch_blob([source], "team/app", Digest.parse(layer.digest), layer.size - 1)
    assert isinstance(found, list) and "longer" in found[0].reason


def test_unreadable_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not an OCI layout"):
        open_source(f"oci:{tmp_path}", open_registry)
    (tmp_path / "x.tar").write_bytes(b"not a tar")
    with pytest.raises(SourceError, match="not a readable tar"):
        open_source(f"docker-archive:{tmp_path / 'x.tar'}", open_registry)
    with pytest.raises(UsageError):
        open_source("oci:", open_registry)
