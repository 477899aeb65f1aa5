"""`shipsure scan` on storage the real registry wrote, broke (registry-facts §4) and
garbage-collected (the incident of §1), and while pushes run."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.findings import Report
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.storage.filesystem import FilesystemStorage

# Every registry test here runs against distribution 2.8 and v3 (tests/conftest.py).
pytestmark = pytest.mark.both_registries


def _scan(root: Path, **options: object) -> Report:
    options.setdefault("recheck_delay", 0.0)
    return scan(FilesystemStorage(root), ScanOptions(**options))  # type: ignore[arg-type]


def _found(report: Report) -> set[tuple[str, str | None, str | None]]:
    return {(f.kind, f.repository, f.digest or f.reference) for f in report.findings}


def test_every_fault_of_registry_facts_on_real_storage(fresh_registry: SandboxRegistry) -> None:
    reg, root = fresh_registry, fresh_registry.root
    a = images.push_index(reg.url, "team/a", "latest", platforms=("linux/amd64", "linux/arm64"))
    b = images.push_index(reg.url, "team/b", "latest", platforms=("linux/amd64", "linux/arm64"))
    old = images.push_image(reg.url, "team/c", "old", seed="c-old")
    c = images.push_index(reg.url, "team/c", "latest", platforms=("linux/amd64", "linux/arm64"))
    d = images.push_index(reg.url, "team/d", "latest", platforms=("linux/amd64", "linux/arm64"))
    assert _scan(root, verify_content=True).findings == []

    a_amd, a_arm = a.children
    b_amd, b_arm = b.children
    c_amd, c_arm = c.children
    faults.remove_blob_data(root, a_amd.layer_digests[-1])  # layer data removed, link kept
    faults.remove_layer_link(root, "team/a", a_arm.layer_digests[-1])  # repo link removed
    faults.remove_manifest_data(root, b_amd.digest)  # child's manifest data removed
    faults.remove_revision_link(root, "team/b", b_arm.digest)  # child's revision link removed
    faults.remove_blob_data(root, c_amd.config_digest)  # config data removed
    faults.corrupt_blob(root, c_arm.layer_digests[-1])  # layer bytes corrupted, same size
    faults.corrupt_manifest(root, d.children[1].digest)  # child manifest bytes corrupted
    faults.dangle_tag(root, "team/d", "latest")  # tag points to a revision with no data
    (faults.tag_folder(root, "team/c", "old") / "current" / "link").unlink()
    faults.tag_folder(root, "team/c", "old").joinpath("current").rmdir()
    upload = faults.plant_stale_upload(root, "team/a", age_days=8)

    report = _scan(root, verify_content=True)
    assert _found(report) == {
        (k.BLOB_MISSING, "team/a", a_amd.layer_digests[-1]),
        (k.LAYER_LINK_MISSING, "team/a", a_arm.layer_digests[-1]),
        (k.REVISION_DATA_MISSING, "team/b", b_amd.digest),
        (k.INDEX_CHILD_RELINKABLE, "team/b", b_arm.digest),
        (k.BLOB_MISSING, "team/c", c_amd.config_digest),
        (k.BLOB_DIGEST_MISMATCH, "team/c", c_arm.layer_digests[-1]),
        (k.TAG_LINK_MISSING, "team/c", "old"),
        (k.TAG_MANIFEST_MISSING, "team/d", d.digest),
        (k.UPLOAD_STALE, "team/a", upload),
        # Below a tag that no longer resolves, but still served by digest: corrupt bytes.
        (k.MANIFEST_DIGEST_MISMATCH, "team/d", d.children[1].digest),
    }
    assert old.digest  # untagged now, its revision still linked and fine: no finding
    for f in report.findings:
        if f.kind == k.MANIFEST_DIGEST_MISMATCH:
            assert f.details["tags"] == []
        elif f.kind != k.UPLOAD_STALE:
            assert f.details["tags"] == (["old"] if f.reference == "old" else ["latest"])


def test_incident_delete_untagged_then_apply_serves_children_again(
    fresh_registry: SandboxRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg, root = fresh_registry, fresh_registry.root
    oci = images.push_index(reg.url, "team/app", "latest")
    docker = images.push_index(reg.url, "team/api", "latest", kind="docker")
    nested = images.push_index(reg.url, "team/nested", "latest", nested=True)
    single = images.push_image(reg.url, "team/tool", "latest")
    assert reg.garbage_collect(delete_untagged=True).returncode == 0

    report = _scan(root)
    if reg.flavour == "3":
        # v3 marks what a tagged index lists: the incident does not happen, nothing to find.
        assert report.findings == []
        with httpx.Client(base_url=reg.url, timeout=10) as http:
            for repo, index in (("team/app", oci), ("team/api", docker), ("team/nested", nested)):
                for digest in index.manifest_digests:
                    got = http.head(
                        f"/v2/{repo}/manifests/{digest}", headers={"Accept": mt.MANIFEST_ACCEPT}
                    )
                    assert got.status_code == 200, (repo, digest)
        return
    found = _found(report)
    for repo, index in (("team/app", oci), ("team/api", docker)):
        for child in index.children:
            assert (k.INDEX_CHILD_RELINKABLE, repo, child.digest) in found
            for blob in child.blob_digests:
                assert (k.BLOB_MISSING, repo, blob) in found
    inner = nested.inner[0]
    assert (k.INDEX_CHILD_RELINKABLE, "team/nested", inner.digest) in found
    # The inner index survives (the outer one marks it) but its children are gone for good;
    # what their layers were is unknowable now, so those layer links just dangle.
    for child in inner.children:
        assert (k.INDEX_CHILD_LOST, "team/nested", child.digest) in found
    assert not [f for f in report.findings if f.repository == "team/tool"]
    for f in report.findings:
        want = [] if f.kind == k.LAYER_LINK_DANGLING else ["latest"]
        assert f.details.get("tags") == want, f
    assert single.digest

    journal = tmp_path / "journal.jsonl"
    assert main(["scan", "--recheck-delay=0", str(root), "--apply", "--journal", str(journal)]) == 1
    capsys.readouterr()
    relinked = [("team/app", d) for d in oci.manifest_digests]
    relinked += [("team/api", d) for d in docker.manifest_digests]
    relinked += [
        ("team/nested", d) for d in (nested.digest, nested.children[0].digest, inner.digest)
    ]
    with httpx.Client(base_url=reg.url, timeout=10) as http:
        for repo, digest in relinked:
            got = http.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": mt.MANIFEST_ACCEPT})
            assert got.status_code == 200, (repo, digest)
    after = _found(_scan(root))
    assert not {f for f in after if f[0] == k.INDEX_CHILD_RELINKABLE}
    assert (k.BLOB_MISSING, "team/app", oci.children[0].config_digest) in after


def test_pushes_during_the_scan_never_become_findings(fresh_registry: SandboxRegistry) -> None:
    reg = fresh_registry
    images.push_index(reg.url, "busy/app", "base", platforms=("linux/amd64",))
    stop = threading.Event()
    pushed: list[str] = []
    errors: list[BaseException] = []

    def push() -> None:
        try:
            with images.open_client(reg.url) as client:
                n = 0
                while not stop.is_set():
                    repo = f"busy/app{n % 3}"
                    idx = images.push_index(
                        reg.url,
                        repo,
                        f"t{n}",
                        platforms=("linux/amd64", "linux/arm64"),
                        client=client,
                    )
                    pushed.append(idx.digest)
                    n += 1
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=push)
    thread.start()
    try:
        reports = []
        while len(pushed) < 12 and not errors:
            reports.append(_scan(reg.root, workers=2, recheck_delay=0.5))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors
    assert len(reports) >= 2
    for report in reports:
        assert report.findings == [], [f.to_dict() for f in report.findings]
