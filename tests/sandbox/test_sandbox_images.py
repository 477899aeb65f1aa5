"""Every kind the sandbox pushes is served back by the real registry exactly as pushed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.sandbox import images
from shipsure.sandbox.images import PushedImage, PushedIndex, PushRefusedError
from shipsure.sandbox.registry import SandboxRegistry

from .served import Served, error_code

# Every registry test here runs against distribution 2.8 and v3 (tests/conftest.py).
pytestmark = pytest.mark.both_registries


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_manifest_served(served: Served, reference: str, pushed: Any) -> None:
    response = served.manifest(reference)
    assert response.status_code == 200
    assert response.content == pushed.raw
    assert response.headers["docker-content-digest"] == pushed.digest
    assert response.headers["content-type"] == pushed.media_type


def assert_image_served(served: Served, image: PushedImage) -> None:
    assert_manifest_served(served, image.digest, image)
    config = served.blob(image.config_digest)
    assert config.status_code == 200
    assert sha256(config.content) == image.config_digest
    diff_ids = json.loads(config.content)["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(image.layers)
    for layer, diff_id in zip(image.layers, diff_ids, strict=True):
        response = served.blob(layer.digest)
        assert response.status_code == 200
        assert sha256(response.content) == layer.digest
        if layer.media_type in (mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER):
            tar_bytes = gzip.decompress(response.content)
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
                assert tar.getmembers()
        else:
            tar_bytes = response.content
        assert sha256(tar_bytes) == diff_id


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_single_image_is_served_back(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client, kind: images.Kind
) -> None:
    image = images.push_image(registry.url, repo_name, "v1", kind=kind, layers=3)
    served = Served(http, registry.url, repo_name)
    assert_manifest_served(served, "v1", image)
    assert_image_served(served, image)
    expected_config = mt.OCI_CONFIG if kind == "oci" else mt.DOCKER_CONFIG
    assert image.config.media_type == expected_config
    assert len(image.layer_digests) == 3


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_index_is_served_back_with_a_shared_base_layer(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client, kind: images.Kind
) -> None:
    index = images.push_index(registry.url, repo_name, "v1", kind=kind)
    served = Served(http, registry.url, repo_name)
    assert_manifest_served(served, "v1", index)
    listed = json.loads(index.raw)["manifests"]
    assert [entry["digest"] for entry in listed] == [c.digest for c in index.children]
    assert [entry["platform"].get("variant") for entry in listed] == [None, None, "v7"]
    for child in index.children:
        assert_image_served(served, child)
    bases = {child.layer_digests[0] for child in index.children}
    assert len(bases) == 1, "every child starts with the same base layer"
    assert len(index.blob_digests) == 3 + 1 + 3  # configs, shared base, own layers


def test_nested_index_lists_an_inner_index(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    outer = images.push_index(registry.url, repo_name, "v1", nested=True)
    served = Served(http, registry.url, repo_name)
    assert_manifest_served(served, "v1", outer)
    (inner,) = outer.inner
    assert [c.platform for c in outer.children] == ["linux/amd64"]
    assert [c.platform for c in inner.children] == ["linux/arm64", "linux/arm/v7"]
    listed = [entry["digest"] for entry in json.loads(outer.raw)["manifests"]]
    assert listed == [outer.children[0].digest, inner.digest]
    assert_manifest_served(served, inner.digest, inner)
    for image in outer.images():
        assert_image_served(served, image)
    assert len(outer.manifest_digests) == 1 + 1 + 3


def test_attestations_are_buildkit_style(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    index = images.push_index(registry.url, repo_name, "v1", attestations=True)
    served = Served(http, registry.url, repo_name)
    listed = json.loads(index.raw)["manifests"]
    assert len(listed) == 6
    for entry, child, proof in zip(listed[3:], index.children, index.attestations, strict=True):
        assert entry["digest"] == proof.digest
        assert entry["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert entry["annotations"] == {
            "vnd.docker.reference.digest": child.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        }
        assert_image_served(served, proof)


def test_attestations_need_oci(registry: SandboxRegistry, repo_name: str) -> None:
    with pytest.raises(ValueError, match="attestations need kind='oci'"):
        images.push_index(registry.url, repo_name, "v1", kind="docker", attestations=True)


def test_artifact_and_referrers_fallback_tag(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    index = images.push_index(registry.url, repo_name, "v1", platforms=("linux/amd64",))
    sbom = images.push_artifact(registry.url, repo_name, index)
    signature = images.push_artifact(
        registry.url, repo_name, index.digest, artifact_type="application/vnd.example.sig"
    )
    served = Served(http, registry.url, repo_name)
    for artifact in (sbom, signature):
        assert_manifest_served(served, artifact.digest, artifact)
        document = json.loads(artifact.raw)
        assert document["subject"] == index.descriptor()
        assert document["config"] == {"mediaType": mt.OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}
        for digest in artifact.blob_digests:
            assert served.blob(digest).status_code == 200
    fallback = served.manifest("sha256-" + index.digest.split(":")[1])
    assert fallback.status_code == 200
    assert fallback.headers["docker-content-digest"] == signature.referrers_index_digest
    referrers = json.loads(fallback.content)["manifests"]
    assert [(r["digest"], r["artifactType"]) for r in referrers] == [
        (sbom.digest, images.ARTIFACT_TYPE_SBOM),
        (signature.digest, "application/vnd.example.sig"),
    ]
    # registry-facts §3: no referrers API in distribution 2.8 (a router miss, plain text).
    api = http.get(f"{registry.url}/v2/{repo_name}/referrers/{index.digest}")
    assert api.status_code == 404
    assert error_code(api) == ""


def test_same_seed_gives_same_digests(registry: SandboxRegistry, repo_name: str) -> None:
    first = images.push_index(registry.url, f"{repo_name}/a", "v1", seed="fixed")
    second = images.push_index(registry.url, f"{repo_name}/b", "v2", seed="fixed")
    assert first.digest == second.digest
    assert first.manifest_digests == second.manifest_digests
    third = images.push_index(registry.url, f"{repo_name}/a", "v2")
    assert third.digest != first.digest


def test_shared_layers_are_shared_across_images(registry: SandboxRegistry, repo_name: str) -> None:
    one = images.push_image(registry.url, repo_name, "one", shared_layers=("debian",))
    two = images.push_image(registry.url, repo_name, "two", shared_layers=("debian",))
    assert one.layer_digests[0] == two.layer_digests[0]
    assert set(one.layer_digests[1:]).isdisjoint(two.layer_digests[1:])


def test_layer_size_is_honoured() -> None:
    layer = images.make_layer("big", size=300_000)
    assert 300_000 < layer.size < 310_000
    assert images.make_layer("big", size=300_000) == layer


def test_by_digest_push_has_no_tag(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    image = images.push_image(registry.url, repo_name, None, seed="untagged")
    served = Served(http, registry.url, repo_name)
    assert_manifest_served(served, image.digest, image)
    tags = http.get(f"{registry.url}/v2/{repo_name}/tags/list")
    assert tags.status_code == 404 or tags.json()["tags"] in (None, [])


def test_delete_helpers(registry: SandboxRegistry, repo_name: str, http: httpx.Client) -> None:
    served = Served(http, registry.url, repo_name)
    kept = images.push_image(registry.url, repo_name, "kept")
    gone = images.push_image(registry.url, repo_name, "gone")
    images.delete_tag_folder(registry.root, repo_name, "kept")
    assert served.manifest("kept", "HEAD").status_code == 404
    assert served.manifest(kept.digest, "HEAD").status_code == 200
    images.delete_manifest(registry.url, repo_name, gone.digest)
    assert error_code(served.manifest(gone.digest)) == "MANIFEST_UNKNOWN"
    with pytest.raises(PushRefusedError, match="delete of"):
        images.delete_manifest(registry.url, repo_name, gone.digest)


def test_a_refused_push_is_a_clear_error(registry: SandboxRegistry, repo_name: str) -> None:
    with (
        SandboxRegistry(root=registry.root, readonly=True) as readonly,
        pytest.raises(PushRefusedError, match=r"refused upload start in t/.*HTTP 405"),
    ):
        images.push_image(readonly.url, repo_name, "v1")
    assert registry.root.is_dir(), "a given root is never deleted"


def test_pushes_reuse_a_caller_client(registry: SandboxRegistry, repo_name: str) -> None:
    with images.open_client(registry.url) as client:
        index = images.push_index(registry.url, repo_name, "v1", client=client)
        image = images.push_image(registry.url, repo_name, "v2", client=client)
        assert not client.is_closed
    assert isinstance(index, PushedIndex)
    assert image.tag == "v2"


def test_artifact_can_be_tagged_and_listing_is_idempotent(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    tagged = images.push_artifact(registry.url, repo_name, image, tag="sbom")
    again = images.push_artifact(registry.url, repo_name, image, tag="sbom")
    assert again.digest == tagged.digest
    assert again.referrers_index_digest == tagged.referrers_index_digest
    served = Served(http, registry.url, repo_name)
    assert_manifest_served(served, "sbom", tagged)
    listed = json.loads(served.manifest(tagged.referrers_tag).content)["manifests"]
    assert [entry["digest"] for entry in listed] == [tagged.digest]
