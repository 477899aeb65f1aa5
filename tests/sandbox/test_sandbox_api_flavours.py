"""What distribution 2.8 and v3 answer differently over the HTTP API (registry-facts §7),
observed on the real binaries, so shipsure's checks can rely on it on both."""

from __future__ import annotations

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.registry import open_registry
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry

from .served import Served, error_code

pytestmark = pytest.mark.both_registries


def test_tags_list_pagination(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    for n in range(3):
        images.push_image(registry.url, repo_name, f"t{n}", seed=f"page-{n}")
    url = f"{registry.url}/v2/{repo_name}/tags/list"
    page = http.get(url, params={"n": 1})
    assert page.status_code == 200
    if registry.flavour == "2.8":
        # 2.8 ignores n and last: every tag, no Link header.
        assert page.json()["tags"] == ["t0", "t1", "t2"]
        assert "link" not in page.headers
        return
    assert page.json()["tags"] == ["t0"]
    assert page.headers["link"] == f'</v2/{repo_name}/tags/list?last=t0&n=1>; rel="next"'
    rest = http.get(url, params={"n": 5, "last": "t0"})
    assert rest.json()["tags"] == ["t1", "t2"]
    assert "link" not in rest.headers
    assert http.get(url, params={"n": 0}).json()["tags"] == []


def test_catalog_pagination_limit(registry: SandboxRegistry, http: httpx.Client) -> None:
    too_many = http.get(f"{registry.url}/v2/_catalog", params={"n": 1001})
    assert too_many.status_code == 400
    assert error_code(too_many) == "PAGINATION_NUMBER_INVALID"
    assert http.head(f"{registry.url}/v2/_catalog").status_code == 405


def test_manifest_head_carries_the_digest(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    index = images.push_index(registry.url, repo_name, "latest")
    served = Served(http, registry.url, repo_name)
    head = served.manifest("latest", "HEAD")
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == index.digest
    assert head.headers["content-type"] == mt.OCI_INDEX
    blob = served.blob(index.children[0].config_digest, "HEAD")
    assert blob.headers["docker-content-digest"] == index.children[0].config_digest


def test_no_referrers_api_on_either(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    index = images.push_index(registry.url, repo_name, "latest")
    images.push_artifact(registry.url, repo_name, index)
    answer = http.get(f"{registry.url}/v2/{repo_name}/referrers/{index.digest}")
    # A router miss: plain text, not the distribution error JSON.
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/plain")


def test_delete_by_tag(registry: SandboxRegistry, repo_name: str, http: httpx.Client) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    served = Served(http, registry.url, repo_name)
    deleted = http.delete(f"{registry.url}/v2/{repo_name}/manifests/v1")
    if registry.flavour == "2.8":
        # 2.8 deletes by digest only; a tag is parsed as a digest.
        assert deleted.status_code == 400
        assert error_code(deleted) == "DIGEST_INVALID"
        assert served.manifest("v1", "HEAD").status_code == 200
        return
    # v3 untags: the tag is gone, the manifest stays by digest.
    assert deleted.status_code == 202
    assert served.manifest("v1", "HEAD").status_code == 404
    assert served.manifest(image.digest, "HEAD").status_code == 200
    again = http.delete(f"{registry.url}/v2/{repo_name}/manifests/v1")
    assert error_code(again) == "MANIFEST_UNKNOWN"


def test_malformed_digest_and_accept_answers(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    docker = images.push_index(registry.url, repo_name, "latest", kind="docker")
    served = Served(http, registry.url, repo_name)
    bad = http.get(f"{registry.url}/v2/{repo_name}/manifests/sha256:xyz")
    only_v2 = http.get(
        f"{registry.url}/v2/{repo_name}/manifests/latest",
        headers={"Accept": mt.DOCKER_MANIFEST},
    )
    no_accept = http.get(f"{registry.url}/v2/{repo_name}/manifests/latest")
    # A manifest list asked for with only the schema2 type: both answer the linux/amd64 child.
    amd64 = next(c for c in docker.children if c.platform == "linux/amd64")
    assert only_v2.headers["docker-content-digest"] == amd64.digest
    assert only_v2.content == amd64.raw
    if registry.flavour == "2.8":
        # Looked up as a tag named `sha256:xyz`: an internal error.
        assert (bad.status_code, error_code(bad)) == (500, "UNKNOWN")
        # Without any Accept, the amd64 child is rewritten to schema1.
        assert no_accept.json()["schemaVersion"] == 1
    else:
        assert (bad.status_code, error_code(bad)) == (400, "DIGEST_INVALID")
        # v3 has no schema1: it refuses instead.
        assert (no_accept.status_code, error_code(no_accept)) == (400, "MANIFEST_INVALID")
    assert served.manifest("latest").content == docker.raw


def test_catalog_pages_and_what_counts_as_a_repository(fresh_registry: SandboxRegistry) -> None:
    """Both page `_catalog` by 100 without `n`; 2.8 lists folders that have `_layers`, v3
    folders that have `_manifests`. shipsure's client follows `Link` and lists them all."""
    registry = fresh_registry
    image = images.push_image(registry.url, "team/app", "v1")
    repositories = registry.root / "docker" / "registry" / "v2" / "repositories"
    for n in range(105):
        (repositories / f"layers-only/r{n:03}" / "_layers").mkdir(parents=True)
    for n in range(3):
        (repositories / f"manifests-only/r{n}" / "_manifests").mkdir(parents=True)
    tags = faults.tags_folder(registry.root, "team/app")
    for n in range(120):
        current = tags / f"t{n:04}" / "current"
        current.mkdir(parents=True)
        (current / "link").write_text(image.digest)

    first = httpx.get(f"{registry.url}/v2/_catalog", timeout=10)
    with open_registry(registry.host) as client:
        listed = list(client.catalog())
        tag_count = sum(1 for _ in client.tags("team/app"))
    # Without `n`, tags/list answers every tag on both (no Link).
    assert tag_count == 121
    if registry.flavour == "2.8":
        assert len(first.json()["repositories"]) == 100
        assert 'rel="next"' in first.headers["link"]
        assert len(listed) == 106
        assert not [name for name in listed if name.startswith("manifests-only/")]
    else:
        assert "link" not in first.headers
        assert sorted(listed) == [
            "manifests-only/r0",
            "manifests-only/r1",
            "manifests-only/r2",
            "team/app",
        ]
