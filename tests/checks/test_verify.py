"""`shipsure verify` against the real registry: clean images, every fault of registry-facts
§4 that shows over HTTP, the garbage-collection incident, and the stale blob cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shipsure.cli.main import main
from shipsure.registry import open_registry
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry

# Every registry test here runs against distribution 2.8 and v3 (tests/conftest.py).
pytestmark = pytest.mark.both_registries


def run_verify(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["verify", "--format", "json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out)["findings"], err


def kinds(findings: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return sorted((f["kind"], f["digest"]) for f in findings)


@pytest.fixture
def index(registry: SandboxRegistry, repo_name: str) -> images.PushedIndex:
    return images.push_index(registry.url, repo_name, "latest", layers=2)


def ref(registry: SandboxRegistry, repo: str, tag: str = "latest") -> str:
    return f"{registry.host}/{repo}:{tag}"


# --- clean images ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_clean_single_and_multi_arch_images_pass(
    registry: SandboxRegistry, repo_name: str, kind: images.Kind, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "single", kind=kind, layers=3)
    images.push_index(registry.url, repo_name, "multi", kind=kind)
    code, findings, _ = run_verify(
        capsys, "--deep", ref(registry, repo_name, "single"), ref(registry, repo_name, "multi")
    )
    assert (code, findings) == (0, [])


def test_clean_nested_index_with_attestations_and_referrer_passes(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = images.push_index(registry.url, repo_name, "latest", nested=True, attestations=True)
    images.push_artifact(registry.url, repo_name, pushed)
    assert main(["verify", ref(registry, repo_name)]) == 0
    out = capsys.readouterr().out
    # index + inner index + 3 children + 3 attestations + the SBOM referrer
    assert "9 manifests" in out


def test_by_digest_and_tag_at_digest(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = index.repo
    code, findings, _ = run_verify(
        capsys,
        f"{registry.host}/{repo}@{index.digest}",
        f"{registry.host}/{repo}:latest@{index.digest}",
    )
    assert (code, findings) == (0, [])
    other = images.push_image(registry.url, repo, "latest")  # the tag moves on
    code, findings, _ = run_verify(capsys, f"{registry.host}/{repo}:latest@{index.digest}")
    assert code == 0  # info only
    assert [(f["kind"], f["tag_digest"]) for f in findings] == [("tag-moved", other.digest)]


# --- every fault of registry-facts §4 visible over HTTP --------------------------------


def test_layer_data_removed(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    child = index.children[1]
    layer = child.layer_digests[-1]
    faults.remove_blob_data(registry.root, layer)
    code, findings, _ = run_verify(capsys, ref(registry, index.repo))
    assert code == 1
    assert kinds(findings) == [("blob-missing", layer)]
    (f,) = findings
    assert f["repository"] == index.repo
    assert f["status"] == 404 and f["error_code"] == "BLOB_UNKNOWN"
    assert f["path"] == [
        "tag latest",
        f"{child.platform} {child.digest}",
        f"layer {len(child.layers) - 1} {layer}",
    ]


def test_shared_layer_missing_names_every_image_that_needs_it(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    base = index.children[0].layer_digests[0]  # the base layer all children share
    assert all(base in c.layer_digests for c in index.children)
    faults.remove_blob_data(registry.root, base)
    code, findings, _ = run_verify(capsys, ref(registry, index.repo))
    assert code == 1
    assert kinds(findings) == [("blob-missing", base)]
    assert len(findings[0]["also_referenced_by"]) == len(index.children) - 1


def test_layer_link_removed_breaks_only_that_repository(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a = images.push_image(registry.url, f"{repo_name}/a", "v1", seed="shared", layers=2)
    b = images.push_image(registry.url, f"{repo_name}/b", "v1", seed="shared", layers=2)
    assert a.layer_digests == b.layer_digests
    faults.remove_layer_link(registry.root, a.repo, a.layer_digests[0])
    code, findings, _ = run_verify(capsys, ref(registry, a.repo, "v1"), ref(registry, b.repo, "v1"))
    assert code == 1
    assert [(f["repository"], f["kind"], f["digest"]) for f in findings] == [
        (a.repo, "blob-missing", a.layer_digests[0])
    ]


@pytest.mark.parametrize("fault", ["manifest-data", "revision-link"])
def test_index_child_manifest_gone(
    registry: SandboxRegistry,
    index: images.PushedIndex,
    fault: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    child = index.children[2]
    if fault == "manifest-data":
        faults.remove_manifest_data(registry.root, child.digest)
    else:
        faults.remove_revision_link(registry.root, index.repo, child.digest)
    code, findings, _ = run_verify(capsys, ref(registry, index.repo))
    assert code == 1
    assert kinds(findings) == [("manifest-missing", child.digest)]
    assert findings[0]["error_code"] == "MANIFEST_UNKNOWN"
    assert findings[0]["path"] == ["tag latest", f"{child.platform} {child.digest}"]


def test_dangling_tag_is_reported_by_its_tag(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    faults.dangle_tag(registry.root, index.repo, "latest")
    code, findings, _ = run_verify(capsys, ref(registry, index.repo))
    assert code == 1
    assert kinds(findings) == [("tag-not-found", None)]
    assert findings[0]["reference"] == ref(registry, index.repo)
    assert findings[0]["status"] == 404


def test_config_data_removed(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    config = index.children[0].config_digest
    faults.remove_blob_data(registry.root, config)
    code, findings, _ = run_verify(capsys, ref(registry, index.repo))
    assert code == 1
    assert kinds(findings) == [("blob-missing", config)]
    assert findings[0]["role"] == "config"


def test_corrupted_layer_needs_deep(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = index.children[0].layer_digests[-1]
    faults.corrupt_blob(registry.root, layer)
    code, findings, _ = run_verify(capsys, ref(registry, index.repo))
    assert (code, findings) == (0, [])  # HEAD 200: invisible without reading the bytes
    code, findings, _ = run_verify(capsys, "--deep", ref(registry, index.repo))
    assert code == 1
    assert kinds(findings) == [("blob-digest-mismatch", layer)]


def test_corrupted_child_manifest_is_caught_in_both_modes(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    child = index.children[1]
    faults.corrupt_manifest(registry.root, child.digest)
    for extra in ((), ("--deep",)):
        code, findings, _ = run_verify(capsys, *extra, ref(registry, index.repo))
        assert code == 1
        assert kinds(findings) == [("manifest-digest-mismatch", child.digest)]


def test_old_revision_by_digest_with_data_missing(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = images.push_image(registry.url, repo_name, "v1", seed="old")
    images.push_image(registry.url, repo_name, "v1", seed="new")  # the tag moves on
    faults.remove_untagged_revision_data(registry.root, repo_name, old.digest)
    code, findings, _ = run_verify(capsys, f"{registry.host}/{repo_name}@{old.digest}")
    assert code == 1
    assert kinds(findings) == [("manifest-missing", old.digest)]
    code, findings, _ = run_verify(capsys, ref(registry, repo_name, "v1"))
    assert (code, findings) == (0, [])


def test_platform_filter(
    registry: SandboxRegistry, index: images.PushedIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    arm64 = next(c for c in index.children if c.platform == "linux/arm64")
    amd64 = next(c for c in index.children if c.platform == "linux/amd64")
    faults.remove_revision_link(registry.root, index.repo, arm64.digest)
    code, findings, _ = run_verify(capsys, "--platform", "linux/amd64", ref(registry, index.repo))
    assert (code, findings) == (0, [])
    code, findings, _ = run_verify(capsys, "--platform", "linux/arm64", ref(registry, index.repo))
    assert kinds(findings) == [("manifest-missing", arm64.digest)]
    code, findings, _ = run_verify(capsys, "--platform", "linux/s390x", ref(registry, index.repo))
    assert kinds(findings) == [("platform-not-found", index.digest)]
    assert amd64.digest not in json.dumps(findings)


# --- the incident --------------------------------------------------------------------


def test_gc_delete_untagged_incident_fails_verify_while_tag_head_passes(
    fresh_registry: SandboxRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = fresh_registry
    app = images.push_index(reg.url, "team/app", "latest", layers=2)
    base = images.push_index(reg.url, "team/base", "3", kind="docker")
    result = reg.garbage_collect(delete_untagged=True)
    assert result.returncode == 0, result.stderr
    with open_registry(reg.host) as client:
        assert client.head_manifest("team/app", "latest").digest == app.digest  # HEAD 200
    code, findings, _ = run_verify(capsys, f"{reg.host}/team/app:latest", f"{reg.host}/team/base:3")
    if reg.flavour == "3":
        # v3's GC marks what a tagged index lists: nothing to find (registry-facts §7).
        assert (code, findings) == (0, [])
        return
    assert code == 1
    missing = {(f["repository"], f["digest"]) for f in findings if f["kind"] == "manifest-missing"}
    expected = {("team/app", c.digest) for c in app.children} | {
        ("team/base", c.digest) for c in base.children
    }
    assert missing == expected
    assert all(f["kind"] == "manifest-missing" for f in findings)


# --- the stale blob-descriptor cache --------------------------------------------------


def test_stale_cache_head_200_short_body_caught_by_deep(
    cached_registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.push_image(cached_registry.url, repo_name, "v1", layers=2)
    assert main(["verify", ref(cached_registry, repo_name, "v1")]) == 0  # warms the cache
    capsys.readouterr()
    layer = image.layer_digests[0]
    faults.remove_blob_data(cached_registry.root, layer)
    code, findings, _ = run_verify(capsys, ref(cached_registry, repo_name, "v1"))
    assert (code, findings) == (0, [])  # HEAD still 200 from the cache
    code, findings, _ = run_verify(capsys, "--deep", ref(cached_registry, repo_name, "v1"))
    assert code == 1
    assert [f["kind"] for f in findings] in (["blob-truncated"], ["blob-missing"])
    assert findings[0]["digest"] == layer


# --- could not check is never "missing" ------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_unreachable_registry_is_could_not_check(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, _ = run_verify(capsys, "--timeout", "2", f"127.0.0.1:{closed_port}/app:v1")
    assert code == 3
    assert [f["kind"] for f in findings] == ["check-error"]
    assert "missing" not in findings[0]["message"]


@pytest.mark.parametrize(
    "bad", ["Registry.Example.com/App", "app@sha256:short", "app:ta g", "a" * 300]
)
def test_bad_reference_exits_2_with_one_line(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", bad]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "invalid reference" in err


def test_bad_platform_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--platform", "linux", "localhost:1/app"]) == 2
    assert "invalid platform" in capsys.readouterr().err
