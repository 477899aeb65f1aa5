"""The client against a real distribution registry: every read the checks rely on."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from shipsure import mediatypes as mt
from shipsure.model import Digest
from shipsure.registry import HttpRegistry, open_registry
from shipsure.registry.interface import NotFoundError
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry

PREFIX = "t/client"


@dataclass(frozen=True)
class World:
    oci_index: images.PushedIndex
    docker_list: images.PushedIndex
    oci_image: images.PushedImage
    docker_image: images.PushedImage
    sbom: images.PushedArtifact
    signature: images.PushedArtifact


@pytest.fixture(scope="module")
def world(registry: SandboxRegistry) -> World:
    url = registry.url
    oci_index = images.push_index(url, f"{PREFIX}/oci-index", "v1", attestations=True)
    subject = oci_index.children[0]
    return World(
        oci_index=oci_index,
        docker_list=images.push_index(url, f"{PREFIX}/docker-list", "v1", kind="docker"),
        oci_image=images.push_image(url, f"{PREFIX}/oci-image", "v1"),
        docker_image=images.push_image(url, f"{PREFIX}/docker-image", "v1", kind="docker"),
        sbom=images.push_artifact(url, f"{PREFIX}/oci-index", subject),
        signature=images.push_artifact(
            url, f"{PREFIX}/oci-index", subject, artifact_type="application/vnd.example.sig"
        ),
    )


@pytest.fixture(scope="module")
def client(registry: SandboxRegistry) -> Iterator[HttpRegistry]:
    with open_registry(registry.host) as opened:
        yield opened


def test_ping(client: HttpRegistry) -> None:
    client.ping()
    assert client.base_url.startswith("http://127.0.0.1:")  # loopback: plain HTTP


@pytest.mark.parametrize("which", ["oci_index", "docker_list", "oci_image", "docker_image"])
def test_manifest_by_tag_and_digest_is_byte_exact(
    client: HttpRegistry, world: World, which: str
) -> None:
    pushed: images.PushedManifest = getattr(world, which)
    for reference in ("v1", pushed.digest):
        answer = client.get_manifest(pushed.repo, reference)
        assert answer.raw == pushed.raw
        assert answer.media_type == pushed.media_type
        assert answer.digest_header == pushed.digest
        assert Digest.of(answer.raw) == Digest.parse(pushed.digest)
        head = client.head_manifest(pushed.repo, reference)
        assert (head.digest, head.media_type, head.size) == (
            pushed.digest,
            pushed.media_type,
            len(pushed.raw),
        )


def test_index_children_and_blobs(client: HttpRegistry, world: World) -> None:
    index = world.oci_index
    for image in index.images():
        answer = client.get_manifest(index.repo, image.digest)
        assert answer.raw == image.raw
        assert answer.media_type == mt.OCI_MANIFEST
        for blob in (image.config, *image.layers):
            digest = Digest.parse(blob.digest)
            assert client.head_blob(index.repo, digest).size == blob.size
            read = client.read_blob(index.repo, digest, limit=blob.size)
            assert (read.size, read.digest, read.overflow) == (blob.size, digest, False)


def test_read_blob_stops_one_byte_past_the_limit(client: HttpRegistry, world: World) -> None:
    layer = world.oci_image.layers[0]
    read = client.read_blob(world.oci_image.repo, Digest.parse(layer.digest), limit=100)
    assert read.size == 101
    assert read.overflow
    assert read.digest == Digest.of(layer.data[:101])


def test_not_found_codes(client: HttpRegistry, world: World) -> None:
    repo = world.oci_image.repo
    absent = Digest.of(b"never pushed")
    with pytest.raises(NotFoundError) as manifest:
        client.get_manifest(repo, "no-such-tag")
    assert (manifest.value.status, manifest.value.code) == (404, "MANIFEST_UNKNOWN")
    with pytest.raises(NotFoundError) as blob:
        client.read_blob(repo, absent, limit=10)
    assert (blob.value.status, blob.value.code) == (404, "BLOB_UNKNOWN")
    with pytest.raises(NotFoundError) as head:
        client.head_blob(repo, absent)
    assert (head.value.status, head.value.code) == (404, None)  # a HEAD has no error body
    with pytest.raises(NotFoundError) as tags:
        list(client.tags(f"{PREFIX}/never-pushed"))
    assert tags.value.code == "NAME_UNKNOWN"


def test_catalog_follows_link_pagination(client: HttpRegistry, world: World) -> None:
    everything = list(client.catalog())
    paged = list(client.catalog(page_size=1))
    assert paged == everything
    assert len(paged) == len(set(paged))
    expected = {f"{PREFIX}/{name}" for name in ("oci-index", "docker-list", "oci-image")}
    assert expected <= set(paged)


def test_tags(client: HttpRegistry, world: World) -> None:
    assert sorted(client.tags(world.oci_image.repo)) == ["v1"]
    # The referrers fallback tag is a tag like any other.
    assert world.sbom.referrers_tag in set(client.tags(world.oci_index.repo))


def test_referrers_fall_back_to_the_tag_schema(client: HttpRegistry, world: World) -> None:
    repo = world.oci_index.repo
    subject = Digest.parse(world.sbom.subject_digest)
    found = client.referrers(repo, subject)
    assert found is not None
    assert {str(d.digest) for d in found} == {world.sbom.digest, world.signature.digest}
    sboms = client.referrers(repo, subject, artifact_type=images.ARTIFACT_TYPE_SBOM)
    assert [str(d.digest) for d in sboms or []] == [world.sbom.digest]
    # Nothing refers to the index itself: neither API nor fallback tag.
    assert client.referrers(repo, Digest.parse(world.oci_index.digest)) is None


def test_many_threads_share_one_client(client: HttpRegistry, world: World) -> None:
    blobs = [
        (image.repo, Digest.parse(d))
        for image in world.oci_index.images()
        for d in image.blob_digests
    ] * 8
    with ThreadPoolExecutor(max_workers=24) as pool:
        sizes = list(pool.map(lambda rd: client.head_blob(*rd).size, blobs))
    assert all(size is not None and size > 0 for size in sizes)
