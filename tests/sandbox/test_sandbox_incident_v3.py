"""The incident of registry-facts §1 on distribution v3, and what v3's GC still removes.

v3's `garbage-collect --delete-untagged` marks everything a tagged index lists, so the
2.8 incident does not happen; what it still deletes that a user may not expect is recorded
in registry-facts §7 and checked here against the real v3 binary.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.storage.filesystem import FilesystemStorage

from .served import Served, error_code
from .test_sandbox_incident import assert_fully_served


def _scan_findings(registry: SandboxRegistry) -> list[tuple[str, str | None]]:
    report = scan(FilesystemStorage(registry.root), ScanOptions(recheck_delay=0.0))
    return sorted((f.kind, f.digest) for f in report.findings)


def test_v3_delete_untagged_keeps_tagged_indexes_whole(
    fresh_v3_registry: SandboxRegistry, http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = fresh_v3_registry
    url, root = registry.url, registry.root
    oci = images.push_index(url, "team/app", "latest", attestations=True)
    docker = images.push_index(url, "team/api", "latest", kind="docker")
    nested = images.push_index(url, "team/nested", "latest", nested=True)
    sbom = images.push_artifact(url, "team/app", oci)  # listed by the fallback tag
    single = images.push_image(url, "team/tool", "latest")
    old = images.push_image(url, "team/tool", "old", seed="old")
    images.delete_tag_folder(root, "team/tool", "old")
    # A signature whose subject is tagged but which no tag lists: what a client that
    # assumes the referrers API leaves behind (`oras attach --distribution-spec
    # v1.1-referrers-api`; tests/checks/test_verify_peers.py does it with oras itself).
    signature = images.push_artifact(url, "team/api", docker, artifact_type="application/x.sig")
    images.delete_tag_folder(root, "team/api", signature.referrers_tag)

    dry = registry.garbage_collect(delete_untagged=True, dry_run=True)
    assert dry.returncode == 0, dry.stderr
    # v3 prints `manifest eligible for deletion: {<repo> <digest> [<tags>]}`.
    eligible = {
        match.group(1)
        for line in dry.stdout.splitlines()
        if (
            match := re.match(r"manifest eligible for deletion: \{\S+ (sha256:[0-9a-f]{64}) ", line)
        )
    }
    # Only the untagged image, the unlisted signature and the index that listed it.
    assert eligible == {old.digest, signature.digest, signature.referrers_index_digest}

    collected = registry.garbage_collect(delete_untagged=True)
    assert collected.returncode == 0, collected.stderr
    app, api = Served(http, url, "team/app"), Served(http, url, "team/api")
    assert_fully_served(app, oci)
    assert_fully_served(api, docker)
    assert_fully_served(Served(http, url, "team/nested"), nested)
    assert app.manifest(sbom.referrers_tag, "HEAD").status_code == 200
    assert app.manifest(sbom.digest, "HEAD").status_code == 200
    tool = Served(http, url, "team/tool")
    assert tool.manifest("latest").content == single.raw

    # What v3 still removes: the untagged image and the unlisted signature, manifests and
    # blobs; unlike 2.8 it also removes the layer links of the blobs it deletes.
    assert error_code(tool.manifest(old.digest)) == "MANIFEST_UNKNOWN"
    assert error_code(api.manifest(signature.digest)) == "MANIFEST_UNKNOWN"
    for digest in old.blob_digests:
        assert not faults.layer_link_path(root, "team/tool", digest).exists()
        assert not faults.blob_data_path(root, digest).exists()
    assert not faults.layer_link_path(root, "team/api", signature.layer.digest).exists()
    # The empty config `{}` is shared with the kept SBOM: data kept, this repo's link gone.
    assert not faults.layer_link_path(root, "team/api", signature.config.digest).exists()
    assert faults.blob_data_path(root, signature.config.digest).is_file()

    # The storage left behind is consistent: scan finds nothing (no false alarm) ...
    assert _scan_findings(registry) == []
    # ... and whoever pinned the removed manifests by digest is told by verify.
    pins = [
        f"{registry.host}/team/tool@{old.digest}",
        f"{registry.host}/team/api@{signature.digest}",
    ]
    assert main(["verify", "--format", "json", *pins]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert sorted((f["kind"], f["digest"]) for f in findings) == sorted(
        [("manifest-missing", old.digest), ("manifest-missing", signature.digest)]
    )
    assert (
        main(["verify", f"{registry.host}/team/app:latest", f"{registry.host}/team/api:latest"])
        == 0
    )


@pytest.mark.both_registries
def test_plain_gc_sweeps_the_blobs_of_a_child_whose_revision_link_is_gone(
    fresh_registry: SandboxRegistry, http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """Index-aware marking follows children through the repository's revision links: a
    child that lost its link (re-linkable, registry-facts §4) is not marked on either
    flavour, so even a plain GC deletes its config and layers."""
    registry = fresh_registry
    root = registry.root
    index = images.push_index(registry.url, "team/a", "latest", platforms=("linux/amd64",))
    (child,) = index.children
    faults.remove_revision_link(root, "team/a", child.digest)
    assert _scan_findings(registry) == [("index-child-relinkable", child.digest)]

    collected = registry.garbage_collect()
    assert collected.returncode == 0, collected.stderr
    served = Served(http, registry.url, "team/a")
    for digest in child.blob_digests:
        assert error_code(served.blob(digest)) == "BLOB_UNKNOWN"
        assert not faults.blob_data_path(root, digest).exists()
        # 2.8 leaves the layer links dangling; v3 removes them with the blobs.
        link_kept = faults.layer_link_path(root, "team/a", digest).exists()
        assert link_kept == (registry.flavour == "2.8")
    # The child's own manifest data survives (the tagged index marks it).
    assert faults.blob_data_path(root, child.digest).is_file()

    # Both flavours leave the same state to find, and scan and verify say the same.
    expected = [("index-child-relinkable", child.digest)]
    expected += [("blob-missing", digest) for digest in child.blob_digests]
    assert _scan_findings(registry) == sorted(expected)
    assert main(["verify", "--format", "json", f"{registry.host}/team/a:latest"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(f["kind"], f["digest"]) for f in findings] == [("manifest-missing", child.digest)]
