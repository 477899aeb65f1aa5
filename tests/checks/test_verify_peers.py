"""Images pushed, copied, attached and pulled by the field's own clients (crane, regctl,
oras, skopeo) on both registries: shipsure gives the same verdict whoever pushed.

The Go peers come from scripts/peers.sh (`.tools/bin`); each test skips with the reason
when the one it needs is absent. Nothing is downloaded: all content is made locally.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.sandbox import faults, images, peers
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.storage.filesystem import FilesystemStorage

pytestmark = pytest.mark.both_registries

PEER_TIMEOUT_SECONDS = 120

Run = Callable[..., subprocess.CompletedProcess[str]]


def _peer(name: peers.Peer) -> Path:
    found = peers.peer_path(name)
    if found is None:
        pytest.skip(peers.missing_reason(name))
    return found


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Run a peer with a HOME of its own (no credentials or config of the caller's)."""
    home = tmp_path / "home"
    home.mkdir()

    def runner(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=PEER_TIMEOUT_SECONDS,
            cwd=tmp_path,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin", "DOCKER_CONFIG": str(home)},
            check=False,
        )
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    return runner


def verify(capsys: pytest.CaptureFixture[str], *refs: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["verify", "--deep", "--format", "json", *refs])
    return code, json.loads(capsys.readouterr().out)["findings"]


def found(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["digest"]) for f in findings)


def layer_file(path: Path, text: str) -> Path:
    """A gzip'd tar with one file, as `crane append -f` takes it (deterministic bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def crane_multi_arch(run: Run, tmp_path: Path, base: str) -> str:
    """Two single-platform images and an index of them, as crane builds one (index append)."""
    crane = _peer("crane")
    for arch in ("amd64", "arm64"):
        layer = layer_file(tmp_path / f"{arch}.tgz", f"hello from {arch}\n")
        run(crane, "append", "--insecure", "-f", layer, "-t", f"{base}:{arch}")
        run(crane, "mutate", "--insecure", "--set-platform", f"linux/{arch}", f"{base}:{arch}")
    # Start from amd64 alone, then append arm64 to the pushed index (the base index).
    run(crane, "index", "append", "--insecure", "-m", f"{base}:amd64", "-t", f"{base}:multi")
    run(
        crane,
        "index",
        "append",
        "--insecure",
        f"{base}:multi",
        "-m",
        f"{base}:arm64",
        "-t",
        f"{base}:multi",
    )
    digest = run(crane, "digest", "--insecure", f"{base}:multi").stdout.strip()
    return digest


def manifest(run: Run, ref: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run(_peer("crane"), "manifest", "--insecure", ref).stdout)
    return document


def test_crane_multi_arch_push_verifies_clean_and_pulls(
    registry: SandboxRegistry,
    repo_name: str,
    run: Run,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = f"{registry.host}/{repo_name}"
    crane_multi_arch(run, tmp_path, base)
    index = manifest(run, f"{base}:multi")
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    assert verify(capsys, f"{base}:multi") == (0, [])
    # The field's own checks agree.
    assert "PASS" in run(_peer("crane"), "validate", "--remote", f"{base}:multi").stdout
    run(_peer("crane"), "pull", "--insecure", "--format", "oci", f"{base}:multi", tmp_path / "p")
    run(
        _peer("skopeo"),
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{base}:multi",
        f"oci:{tmp_path / 'skopeo'}:multi",
    )


def test_same_verdict_whoever_pushed(
    registry: SandboxRegistry,
    repo_name: str,
    run: Run,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same index in three repositories (pushed by the sandbox, copied by crane and by
    regctl), the same layer link removed in each: the same finding for each."""
    crane, regctl = _peer("crane"), _peer("regctl")
    host = f"reg={registry.host},tls=disabled"
    pushed = images.push_index(registry.url, f"{repo_name}/sandbox", "latest", layers=2)
    source = f"{registry.host}/{repo_name}/sandbox:latest"
    by_crane, by_regctl = f"{repo_name}/crane", f"{repo_name}/regctl"
    run(crane, "copy", "--insecure", source, f"{registry.host}/{by_crane}:latest")
    run(regctl, "--host", host, "image", "copy", source, f"{registry.host}/{by_regctl}:latest")
    repos = (pushed.repo, by_crane, by_regctl)
    refs = [f"{registry.host}/{repo}:latest" for repo in repos]
    assert verify(capsys, *refs) == (0, [])

    child = pushed.children[1]
    layer = child.layer_digests[0]
    for repo in repos:
        # Every copy is byte-identical: same digests, so the same fault in each.
        assert manifest(run, f"{registry.host}/{repo}:latest")["manifests"][1]["digest"] == (
            child.digest
        )
        faults.remove_layer_link(registry.root, repo, layer)
    code, findings = verify(capsys, *refs)
    assert code == 1
    assert sorted((f["repository"], f["kind"], f["digest"]) for f in findings) == sorted(
        (repo, "blob-missing", layer) for repo in repos
    )
    # The field's tools fail on the same images.
    for ref in refs:
        assert run(crane, "validate", "--remote", ref, ok=False).returncode != 0


def test_regctl_index_create_verifies_clean(
    registry: SandboxRegistry,
    repo_name: str,
    run: Run,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = f"{registry.host}/{repo_name}"
    crane_multi_arch(run, tmp_path, base)
    host = f"reg={registry.host},tls=disabled"
    run(
        _peer("regctl"),
        "--host",
        host,
        "index",
        "create",
        f"{base}:regctl",
        "--ref",
        f"{base}:amd64",
        "--ref",
        f"{base}:arm64",
    )
    assert len(manifest(run, f"{base}:regctl")["manifests"]) == 2
    assert verify(capsys, f"{base}:regctl") == (0, [])


def oras_attach(run: Run, tmp_path: Path, subject: str, *flags: str) -> str:
    (tmp_path / "sbom.json").write_text('{"packages": []}\n')
    result = run(
        _peer("oras"),
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.sbom",
        *flags,
        subject,
        "sbom.json:application/json",
    )
    digest = next(
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("Digest:")
    )
    return digest


def test_oras_referrer_verifies_then_its_removal_is_reported(
    registry: SandboxRegistry,
    repo_name: str,
    run: Run,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = images.push_index(registry.url, repo_name, "latest")
    ref = f"{registry.host}/{repo_name}:latest"
    referrer = oras_attach(run, tmp_path, ref)
    # Neither registry serves the referrers API: oras kept the `sha256-<hex>` fallback tag.
    fallback = images.referrers_tag(index.digest)
    tags = run(_peer("crane"), "ls", "--insecure", f"{registry.host}/{repo_name}").stdout
    assert fallback in tags.split()
    discovered = json.loads(
        run(_peer("oras"), "discover", "--plain-http", "--format", "json", ref).stdout
    )
    assert [r["digest"] for r in discovered["referrers"]] == [referrer]
    assert verify(capsys, ref) == (0, [])

    # A plain DELETE (crane) leaves the fallback index listing a manifest that is gone.
    run(_peer("crane"), "delete", "--insecure", f"{registry.host}/{repo_name}@{referrer}")
    code, findings = verify(capsys, ref)
    assert code == 1
    assert found(findings) == [("manifest-missing", referrer)]
    assert findings[0]["role"] == "referrer application/vnd.example.sbom"
    # scan sees the same on disk: data kept, revision link gone, listed by a tagged index.
    report = scan(FilesystemStorage(registry.root), ScanOptions(recheck_delay=0.0))
    mine = [
        (f.kind, f.digest, f.details.get("tags"))
        for f in report.findings
        if f.repository == repo_name
    ]
    assert mine == [("index-child-relinkable", referrer, [fallback])]


def test_oras_manifest_delete_leaves_nothing_to_report(
    fresh_registry: SandboxRegistry, run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`oras manifest delete` of a referrer pushes a new fallback index without it, so the
    subject verifies clean; the previous index stays behind, untagged, still listing the
    deleted referrer (observed on 2.8 and v3). Nothing a user can pull is broken: scan
    should neither warn nor plan to bring the deleted referrer back."""
    registry = fresh_registry
    images.push_index(registry.url, "team/app", "latest")
    ref = f"{registry.host}/team/app:latest"
    referrer = oras_attach(run, tmp_path, ref)
    pinned = f"{registry.host}/team/app@{referrer}"
    run(_peer("oras"), "manifest", "delete", "--plain-http", "--force", pinned)
    assert verify(capsys, ref) == (0, [])
    report = scan(FilesystemStorage(registry.root), ScanOptions(recheck_delay=0.0))
    assert [(f.kind, f.digest) for f in report.findings] == []


def test_oras_referrer_without_fallback_tag_is_what_v3_gc_removes(
    fresh_registry: SandboxRegistry, run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`oras attach --distribution-spec v1.1-referrers-api` pushes the referrer without the
    fallback tag (neither registry serves the API, and oras does not check): the referrer
    is undiscoverable and untagged, and `garbage-collect -m` deletes it on both flavours
    while keeping its tagged subject whole on v3 (registry-facts §7)."""
    registry = fresh_registry
    index = images.push_index(registry.url, "team/app", "latest")
    ref = f"{registry.host}/team/app:latest"
    referrer = oras_attach(run, tmp_path, ref, "--distribution-spec", "v1.1-referrers-api")
    tags = run(_peer("crane"), "ls", "--insecure", f"{registry.host}/team/app").stdout
    assert tags.split() == ["latest"]
    pinned = f"{registry.host}/team/app@{referrer}"
    assert verify(capsys, ref, pinned) == (0, [])

    assert registry.garbage_collect(delete_untagged=True).returncode == 0
    code, findings = verify(capsys, ref, pinned)
    expected = [("manifest-missing", referrer)]
    if registry.flavour == "2.8":
        expected += [("manifest-missing", child.digest) for child in index.children]
    assert (code, found(findings)) == (1, sorted(expected))
