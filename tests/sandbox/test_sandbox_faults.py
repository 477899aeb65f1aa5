"""Each storage fault of registry-facts §4 shows exactly the HTTP symptom the table says.

This is the ground truth the checks are built against, observed on the real registry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from shipsure.sandbox import SandboxError, faults, images
from shipsure.sandbox.images import PushedIndex
from shipsure.sandbox.registry import SandboxRegistry

from .served import Served, error_code

# Every registry test here runs against distribution 2.8 and v3 (tests/conftest.py).
pytestmark = pytest.mark.both_registries


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(registry: SandboxRegistry, repo_name: str, http: httpx.Client) -> Served:
    return Served(http, registry.url, repo_name)


@pytest.fixture
def index(registry: SandboxRegistry, repo_name: str) -> PushedIndex:
    return images.push_index(registry.url, repo_name, "latest")


def test_layer_data_removed(registry: SandboxRegistry, served: Served, index: PushedIndex) -> None:
    layer = index.children[0].layer_digests[-1]
    faults.remove_blob_data(registry.root, layer)
    assert faults.layer_link_path(registry.root, served.repo, layer).is_file()
    assert served.manifest("latest", "HEAD").status_code == 200
    assert served.blob(layer, "HEAD").status_code == 404
    response = served.blob(layer)
    assert response.status_code == 404
    assert error_code(response) == "BLOB_UNKNOWN"


def test_layer_link_removed_in_one_repository_only(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    broken = images.push_image(registry.url, f"{repo_name}/broken", "v1", seed="same")
    intact = images.push_image(registry.url, f"{repo_name}/intact", "v1", seed="same")
    layer = broken.layer_digests[0]
    assert intact.layer_digests[0] == layer
    faults.remove_layer_link(registry.root, broken.repo, layer)
    assert faults.blob_data_path(registry.root, layer).is_file()
    in_broken = Served(http, registry.url, broken.repo)
    assert in_broken.manifest("v1", "HEAD").status_code == 200
    assert error_code(in_broken.blob(layer)) == "BLOB_UNKNOWN"
    assert Served(http, registry.url, intact.repo).blob(layer).status_code == 200


@pytest.mark.parametrize("fault", ["manifest data removed", "revision link removed"])
def test_index_child_gone(
    registry: SandboxRegistry, served: Served, index: PushedIndex, fault: str
) -> None:
    child = index.children[1].digest
    if fault == "manifest data removed":
        faults.remove_manifest_data(registry.root, child)
        assert faults.revision_link_path(registry.root, served.repo, child).is_file()
    else:
        faults.remove_revision_link(registry.root, served.repo, child)
        assert faults.blob_data_path(registry.root, child).is_file()
    assert served.manifest("latest", "HEAD").status_code == 200
    assert served.manifest("latest").content == index.raw
    assert served.manifest(child, "HEAD").status_code == 404
    response = served.manifest(child)
    assert response.status_code == 404
    assert error_code(response) == "MANIFEST_UNKNOWN"
    assert served.manifest(index.children[0].digest).status_code == 200


def test_tag_points_to_a_revision_with_no_data(
    registry: SandboxRegistry, served: Served, index: PushedIndex
) -> None:
    digest = faults.dangle_tag(registry.root, served.repo, "latest")
    assert digest == index.digest
    assert faults.tagged_digest(registry.root, served.repo, "latest") == digest
    # The only fault a tag HEAD shows.
    assert served.manifest("latest", "HEAD").status_code == 404
    assert error_code(served.manifest("latest")) == "MANIFEST_UNKNOWN"
    assert served.manifest(digest, "HEAD").status_code == 404


def test_config_data_removed(registry: SandboxRegistry, served: Served, index: PushedIndex) -> None:
    child = index.children[2]
    faults.remove_blob_data(registry.root, child.config_digest)
    assert served.manifest("latest", "HEAD").status_code == 200
    assert served.manifest(child.digest).status_code == 200
    assert error_code(served.blob(child.config_digest)) == "BLOB_UNKNOWN"


def test_layer_bytes_corrupted_same_size(
    registry: SandboxRegistry, served: Served, index: PushedIndex
) -> None:
    layer = index.children[0].layers[-1]
    faults.corrupt_blob(registry.root, layer.digest)
    head = served.blob(layer.digest, "HEAD")
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == layer.digest
    response = served.blob(layer.digest)
    assert response.status_code == 200
    assert len(response.content) == layer.size
    assert response.content != layer.data
    assert sha256(response.content) != layer.digest


def test_child_manifest_bytes_corrupted(
    registry: SandboxRegistry, served: Served, index: PushedIndex
) -> None:
    child = index.children[0]
    faults.corrupt_manifest(registry.root, child.digest)
    assert served.manifest("latest", "HEAD").status_code == 200
    response = served.manifest(child.digest)
    assert response.status_code == 200
    assert response.headers["docker-content-digest"] == child.digest
    assert len(response.content) == child.size
    assert sha256(response.content) != child.digest


def test_old_revision_data_removed(
    registry: SandboxRegistry, repo_name: str, served: Served
) -> None:
    old = images.push_image(registry.url, repo_name, "v1", seed="old")
    new = images.push_image(registry.url, repo_name, "v1", seed="new")
    with pytest.raises(SandboxError, match="still names"):
        faults.remove_untagged_revision_data(registry.root, repo_name, new.digest)
    faults.remove_untagged_revision_data(registry.root, repo_name, old.digest)
    assert served.manifest("v1", "HEAD").status_code == 200
    assert error_code(served.manifest(old.digest)) == "MANIFEST_UNKNOWN"


def test_stale_upload_is_invisible_over_http(
    registry: SandboxRegistry, repo_name: str, served: Served, http: httpx.Client
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    tags_before = http.get(f"{registry.url}/v2/{repo_name}/tags/list").json()
    upload = faults.plant_stale_upload(registry.root, repo_name, age_days=9)
    folder = faults.upload_folder(registry.root, repo_name, upload)
    assert (folder / "data").stat().st_size == 1024
    assert (folder / "startedat").read_text().endswith("Z")
    assert http.get(f"{registry.url}/v2/{repo_name}/tags/list").json() == tags_before
    assert served.manifest("v1", "HEAD").status_code == 200
    status = http.get(f"{registry.url}/v2/{repo_name}/blobs/uploads/{upload}")
    if registry.flavour == "2.8":
        # Without the `_state` the registry handed its creator, nobody can even ask about it.
        assert status.status_code == 404
        assert error_code(status) == "BLOB_UPLOAD_INVALID"
    else:
        # v3 answers whoever knows the random id (registry-facts §7); nothing lists it.
        assert status.status_code == 204
        assert status.headers["range"] == "0-1023"


def test_faults_name_what_is_missing(registry: SandboxRegistry, tmp_path: Path) -> None:
    digest = "sha256:" + "0" * 64
    with pytest.raises(SandboxError, match="does not exist"):
        faults.remove_blob_data(tmp_path, digest)
    with pytest.raises(SandboxError, match="not sha256"):
        faults.blob_data_path(tmp_path, "md5:abc")
    with pytest.raises(SandboxError, match="repository nope does not exist"):
        faults.plant_stale_upload(tmp_path, "nope")


def test_path_helpers_match_the_registry_layout(registry: SandboxRegistry, repo_name: str) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    root = registry.root
    assert faults.blob_data_path(root, image.digest).read_bytes() == image.raw
    assert (
        faults.read_link(faults.revision_link_path(root, repo_name, image.digest)) == image.digest
    )
    assert faults.tagged_digest(root, repo_name, "v1") == image.digest
    index_link = faults.tag_index_link_path(root, repo_name, "v1", image.digest)
    assert faults.read_link(index_link) == image.digest
    for digest in image.blob_digests:
        assert faults.read_link(faults.layer_link_path(root, repo_name, digest)) == digest
    # registry-facts §2: link files hold the digest text with no newline.
    assert (
        not faults.layer_link_path(root, repo_name, image.config_digest)
        .read_bytes()
        .endswith(b"\n")
    )
