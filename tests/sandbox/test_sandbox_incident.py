"""The incident of registry-facts §1, reproduced with the real `garbage-collect`.

Garbage collection runs while the registry keeps serving: on filesystem storage without a
blob cache the running registry answers from disk, so no restart is needed to see the 404s.
"""

from __future__ import annotations

import httpx
import pytest

from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.sandbox import faults, images
from shipsure.sandbox.images import PushedIndex
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.storage.filesystem import FilesystemStorage

from .served import Served, error_code


def assert_fully_served(served: Served, index: PushedIndex) -> None:
    assert served.manifest(index.tag or index.digest, "HEAD").status_code == 200
    for digest in index.manifest_digests:
        assert served.manifest(digest, "HEAD").status_code == 200, digest
    for digest in index.blob_digests:
        assert served.blob(digest, "HEAD").status_code == 200, digest


def test_delete_untagged_breaks_every_tagged_multi_arch_image(
    fresh_registry: SandboxRegistry, http: httpx.Client
) -> None:
    registry = fresh_registry
    oci = images.push_index(registry.url, "team/app", "latest")
    docker = images.push_index(registry.url, "team/api", "latest", kind="docker")
    single = images.push_image(registry.url, "team/tool", "latest")
    nested = images.push_index(registry.url, "team/nested", "latest", nested=True)
    sbom = images.push_artifact(registry.url, "team/app", oci)
    app, api = Served(http, registry.url, "team/app"), Served(http, registry.url, "team/api")
    nest, tool = Served(http, registry.url, "team/nested"), Served(http, registry.url, "team/tool")

    # Plain GC marks every linked revision: nothing is lost.
    plain = registry.garbage_collect()
    assert plain.returncode == 0, plain.stderr
    assert_fully_served(app, oci)
    assert_fully_served(api, docker)

    # The tell-tale of `--dry-run -m`: each child is both "eligible for deletion" and marked.
    dry = registry.garbage_collect(delete_untagged=True, dry_run=True)
    assert dry.returncode == 0, dry.stderr
    for child in oci.children:
        assert f"manifest eligible for deletion: {child.digest}" in dry.stdout
        assert f"team/app: marking blob {child.digest}" in dry.stdout
    assert_fully_served(app, oci)

    collected = registry.garbage_collect(delete_untagged=True)
    assert collected.returncode == 0, collected.stderr
    for served, index in ((app, oci), (api, docker)):
        # The tag still resolves to the very same index...
        tag = served.manifest("latest")
        assert tag.status_code == 200
        assert tag.content == index.raw
        for child in index.children:
            # ...but every child manifest, config and layer is gone from the API.
            assert error_code(served.manifest(child.digest)) == "MANIFEST_UNKNOWN"
            for digest in child.blob_digests:
                assert error_code(served.blob(digest)) == "BLOB_UNKNOWN", digest
            # On disk: the index marked the child's manifest blob, so its data survives
            # while its revision folder is swept; layer links of deleted blobs dangle.
            root = registry.root
            assert faults.blob_data_path(root, child.digest).is_file()
            assert not faults.revision_folder(root, served.repo, child.digest).exists()
            for digest in child.blob_digests:
                assert faults.layer_link_path(root, served.repo, digest).is_file()
                assert not faults.blob_data_path(root, digest).exists()

    # A single-platform image is untouched.
    assert tool.manifest("latest").content == single.raw
    for digest in single.blob_digests:
        assert tool.blob(digest, "HEAD").status_code == 200

    # Nested: the outer tag and its direct child's data stay; the inner index and its
    # children lose their revisions, and the inner children lose their data too.
    (inner,) = nested.inner
    assert nest.manifest("latest", "HEAD").status_code == 200
    assert error_code(nest.manifest(inner.digest)) == "MANIFEST_UNKNOWN"
    assert faults.blob_data_path(registry.root, inner.digest).is_file()
    for child in inner.children:
        assert error_code(nest.manifest(child.digest)) == "MANIFEST_UNKNOWN"
        assert not faults.blob_data_path(registry.root, child.digest).exists()

    # The referrers fallback tag survives, the SBOM it lists does not.
    assert app.manifest(sbom.referrers_tag).status_code == 200
    assert error_code(app.manifest(sbom.digest)) == "MANIFEST_UNKNOWN"
    for digest in sbom.blob_digests:
        assert app.blob(digest, "HEAD").status_code == 404


def test_tag_folder_cleanup_then_plain_gc_reclaims_nothing(
    fresh_registry: SandboxRegistry, http: httpx.Client
) -> None:
    registry = fresh_registry
    old = images.push_image(registry.url, "team/app", "old")
    images.push_image(registry.url, "team/app", "new")
    images.delete_tag_folder(registry.root, "team/app", "old")
    collected = registry.garbage_collect()
    assert collected.returncode == 0, collected.stderr
    served = Served(http, registry.url, "team/app")
    assert served.manifest(old.digest).content == old.raw
    for digest in old.blob_digests:
        assert served.blob(digest, "HEAD").status_code == 200


@pytest.mark.both_registries
def test_delete_untagged_when_a_repository_has_no_tags_folder(
    fresh_registry: SandboxRegistry, http: httpx.Client
) -> None:
    registry = fresh_registry
    index = images.push_index(registry.url, "team/app", "latest")
    untagged = images.push_image(registry.url, "team/untagged", "v1")
    images.delete_tag_folder(registry.root, "team/untagged", "v1")
    faults.tags_folder(registry.root, "team/untagged").rmdir()
    collected = registry.garbage_collect(delete_untagged=True)
    # Either way the tagged index stays whole: 2.8 fails before deleting anything (not even
    # the children it would otherwise have swept); v3 carries on.
    assert_fully_served(Served(http, registry.url, "team/app"), index)
    gone = Served(http, registry.url, "team/untagged").manifest(untagged.digest, "HEAD")
    if registry.flavour == "2.8":
        assert collected.returncode == 1
        assert "unknown repository" in collected.stdout + collected.stderr
        assert gone.status_code == 200
        return
    # v3 skips marking that repository's manifests without listing them for deletion
    # ("manifest tags path of repository team/untagged does not exist", "0 manifests
    # eligible"), so their data and blobs are swept while the revision links stay behind.
    assert collected.returncode == 0, collected.stderr
    assert "manifest tags path of repository team/untagged does not exist" in collected.stdout
    assert gone.status_code == 404
    assert faults.revision_folder(registry.root, "team/untagged", untagged.digest).is_dir()
    for digest in (untagged.digest, *untagged.blob_digests):
        assert not faults.blob_data_path(registry.root, digest).exists()
    report = scan(FilesystemStorage(registry.root), ScanOptions(recheck_delay=0.0))
    assert [(f.kind, f.repository, f.digest) for f in report.findings] == [
        ("revision-data-missing", "team/untagged", untagged.digest)
    ]


def test_deleting_a_child_a_tagged_index_lists_is_accepted(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    index = images.push_index(registry.url, repo_name, "latest")
    images.delete_manifest(registry.url, repo_name, index.children[0].digest)
    served = Served(http, registry.url, repo_name)
    assert served.manifest("latest", "HEAD").status_code == 200
    assert error_code(served.manifest(index.children[0].digest)) == "MANIFEST_UNKNOWN"


@pytest.mark.both_registries
@pytest.mark.parametrize("delete_untagged", [False, True])
def test_gc_on_an_empty_storage_fails_cleanly(
    fresh_registry: SandboxRegistry, delete_untagged: bool
) -> None:
    collected = fresh_registry.garbage_collect(delete_untagged=delete_untagged)
    assert collected.returncode == 1
    assert "Path not found" in collected.stdout + collected.stderr
