"""`shipsure restore` against real distribution 2.8 registries: the garbage-collection
incident and a layer deleted under a present link, restored from a second registry, an OCI
layout and docker save archives; then `verify --deep` and a real `skopeo copy --all`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest

from shipsure import plan as writes
from shipsure.checks.verify import VerifyOptions, verify
from shipsure.cli.main import main
from shipsure.model import Digest, Reference
from shipsure.recovery.apply import apply_plan
from shipsure.recovery.plan import Planner, Wanted, damage_from_report
from shipsure.recovery.registry_source import RegistrySource
from shipsure.registry import open_registry
from shipsure.registry.http import HttpRegistry
from shipsure.registry.push import Pusher
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry

from .conftest import Seeded, copy_all_out, require_skopeo, seed, skopeo


def journal_steps(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_children_first(entries: list[dict[str, Any]], seeded: Seeded) -> None:
    """Every `done` push of a parent comes after the pushes of what it lists."""
    done = [e["facts"] for e in entries if e["state"] == "done"]
    position = {(e["repository"], e["digest"]): i for i, e in enumerate(done)}
    (inner,) = seeded.nested.inner
    for child in inner.children:
        pair = ("team/nested", child.digest)
        if pair in position and ("team/nested", inner.digest) in position:
            assert position[pair] < position[("team/nested", inner.digest)]
        for blob in child.blob_digests:
            if ("team/nested", blob) in position and pair in position:
                assert position[("team/nested", blob)] < position[pair]
    first_manifest = min(
        (i for i, e in enumerate(done) if str(e["op"]).startswith("put-")), default=len(done)
    )
    assert all(str(e["op"]).endswith("-blob") for e in done[:first_manifest])
    assert not any(str(e["op"]).endswith("-blob") for e in done[first_manifest:])


def restore(*args: str) -> int:
    return main(["restore", *args])


def test_gc_incident_restored_from_a_second_registry(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, source = fresh_registry, second_registry
    seeded = seed(target)
    assert seed(source).app.digest == seeded.app.digest  # same images, same digests
    assert target.garbage_collect(delete_untagged=True).returncode == 0
    refs = seeded.refs(target.host)
    assert main(["verify", "--deep", *refs]) == 1
    capsys.readouterr()

    # Plan first: nothing is written.
    assert restore(*refs, "--from", source.host, "--format", "json") == 1
    plan = json.loads(capsys.readouterr().out)
    assert plan["applied"] is False and plan["rebuild"] == []
    planned = {(s["repository"], s["digest"]) for s in plan["steps"]}
    for child in seeded.app.children:
        assert ("team/app", child.digest) in planned
        assert all(("team/app", d) in planned for d in child.blob_digests)
    assert ("team/app", seeded.app.digest) not in planned  # the index itself is intact
    assert ("team/app", seeded.sbom.digest) in planned  # the referrer the GC took
    assert plan["bytes"] == sum(s["size"] for s in plan["steps"])
    assert main(["verify", "--deep", *refs]) == 1

    journal = tmp_path / "journal.jsonl"
    assert restore(*refs, "--from", source.host, "--apply", "--journal", str(journal)) == 0
    assert_children_first(journal_steps(journal), seeded)
    capsys.readouterr()
    assert main(["verify", "--deep", *refs]) == 0
    app_ref = f"{target.host}/team/app@{seeded.sbom.digest}"
    assert main(["verify", "--deep", app_ref]) == 0

    # A real pull of everything, with the original digests.
    require_skopeo()
    layout = tmp_path / "pulled"
    copy_all_out(target.host, "team/app", layout)
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == seeded.app.digest
    for digest in seeded.app.manifest_digests:
        assert (layout / "blobs/sha256" / digest.split(":")[1]).is_file()
    dest = tmp_path / "api"
    copied = skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        f"docker://{target.host}/team/api:latest",
        f"dir:{dest}",
    )
    assert copied.returncode == 0, copied.stderr

    # Run again: a no-op.
    capsys.readouterr()
    assert restore(*refs, "--from", source.host) == 0
    assert "nothing to restore" in capsys.readouterr().out


@pytest.mark.both_registries
def test_layer_deleted_under_a_present_link_is_uploaded_again(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, source = fresh_registry, second_registry
    seeded, _ = seed(target), seed(source)
    layer = seeded.app.children[1].layer_digests[-1]
    faults.remove_blob_data(target.root, layer)
    assert faults.layer_link_path(target.root, "team/app", layer).is_file()
    ref = f"{target.host}/team/app:latest"
    assert main(["verify", "--deep", ref]) == 1
    capsys.readouterr()
    # HEADs are enough to see a 404 (--fast); the plan is the same one upload.
    assert restore(ref, "--from", source.host, "--fast", "--format", "json") == 1
    fast = json.loads(capsys.readouterr().out)
    assert [(s["op"], s["digest"]) for s in fast["steps"]] == [("upload-blob", layer)]
    journal = tmp_path / "j.jsonl"
    assert restore(ref, "--from", source.host, "--apply", "--journal", str(journal)) == 0
    pushed = [e["facts"] for e in journal_steps(journal) if e["state"] == "done"]
    assert [(e["op"], e["digest"]) for e in pushed] == [("upload-blob", layer)]
    assert main(["verify", "--deep", ref]) == 0
    require_skopeo()
    copy_all_out(target.host, "team/app", tmp_path / "pulled")
    assert restore(ref, "--from", source.host) == 0


def test_restore_from_an_oci_layout(
    fresh_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_skopeo()
    target = fresh_registry
    seeded = seed(target)
    backup = tmp_path / "backup"
    copy_all_out(target.host, "team/app", backup)  # the backup, taken before the GC
    assert target.garbage_collect(delete_untagged=True).returncode == 0
    ref = f"{target.host}/team/app:latest"
    journal = tmp_path / "j.jsonl"
    assert restore(ref, "--from", f"oci:{backup}", "--apply", "--journal", str(journal)) == 1
    out = capsys.readouterr().out
    # The layout holds the image; the SBOM referrer (not copied by skopeo) must be rebuilt.
    assert seeded.sbom.digest in out and "rebuild" in out
    capsys.readouterr()
    assert main(["verify", "--deep", "--no-referrers", ref]) == 0
    copy_all_out(target.host, "team/app", tmp_path / "pulled")
    capsys.readouterr()
    assert restore(ref, "--from", f"oci:{backup}") == 1  # the referrer is still lost
    second = capsys.readouterr().out
    assert "plan (" not in second  # nothing left that the layout could give


def _oci_in_tar(layout: Path, archive: Path) -> None:
    """A `docker save` archive as docker 25+ writes it: an OCI layout plus manifest.json."""
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
        manifest = json.dumps([{"Config": "", "RepoTags": ["team/app:latest"], "Layers": []}])
        info = tarfile.TarInfo("manifest.json")
        data = manifest.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_restore_from_docker_save_archives(
    fresh_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_skopeo()
    target = fresh_registry
    seeded = seed(target)
    ref = f"{target.host}/team/app:latest"
    legacy = tmp_path / "legacy.tar"
    saved = skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{ref}",
        f"docker-archive:{legacy}:team/app:latest",
    )
    assert saved.returncode == 0, saved.stderr
    layout = tmp_path / "layout"
    copy_all_out(target.host, "team/app", layout)
    modern = tmp_path / "modern.tar"
    _oci_in_tar(layout, modern)
    amd64 = next(c for c in seeded.app.children if c.platform == "linux/amd64")

    # Legacy format: one platform's config byte for byte, layers uncompressed, no
    # manifests. A config lost under an intact manifest comes back...
    faults.remove_blob_data(target.root, amd64.config_digest)
    journal = tmp_path / "legacy.jsonl"
    args = ["--from", f"docker-archive:{legacy}", "--apply", "--journal", str(journal)]
    assert restore(ref, *args) == 0
    done = [e["facts"] for e in journal_steps(journal) if e["state"] == "done"]
    assert [e["digest"] for e in done] == [amd64.config_digest]
    capsys.readouterr()
    assert main(["verify", "--deep", "--no-referrers", ref]) == 0

    # ...but after the GC the child manifests are gone and the archive holds none: nothing
    # is pushed, and every child is named for a rebuild with the digest its tag had.
    assert target.garbage_collect(delete_untagged=True).returncode == 0
    capsys.readouterr()
    assert restore(ref, "--from", f"docker-archive:{legacy}", "--format", "json") == 1
    plan = json.loads(capsys.readouterr().out)
    assert plan["steps"] == []
    lost = {item["digest"] for item in plan["rebuild"]}
    assert {c.digest for c in seeded.app.children} <= lost
    item = next(i for i in plan["rebuild"] if i["digest"] == amd64.digest)
    assert item["tags"] == [{"reference": "team/app:latest", "digest": seeded.app.digest}]
    assert item["platforms"] == ["linux/amd64"]

    # Docker 25+ format: a full OCI layout inside; everything comes back.
    journal = tmp_path / "j.jsonl"
    args = ["--from", f"docker-archive:{modern}", "--apply", "--journal", str(journal)]
    assert restore(ref, *args) == 1  # only the SBOM referrer, which no archive holds
    capsys.readouterr()
    assert main(["verify", "--deep", "--no-referrers", ref]) == 0
    copy_all_out(target.host, "team/app", tmp_path / "pulled")


class _Killed(BaseException):
    """Stands in for the process dying mid-run: nothing below catches it."""


class _RecordingPusher(Pusher):
    def __init__(self, registry: HttpRegistry, log: list[str], die_after: int | None) -> None:
        super().__init__(registry)
        self.log = log
        self.die_after = die_after

    def _count(self, what: str) -> None:
        if self.die_after is not None and len(self.log) >= self.die_after:
            raise _Killed
        self.log.append(what)

    def upload_blob(self, repository: str, digest: Digest, size: int, content: IO[bytes]) -> None:
        self._count(f"{repository}@{digest}")
        super().upload_blob(repository, digest, size, content)

    def put_manifest(self, repository: str, reference: str, media_type: str, raw: bytes) -> None:
        self._count(f"{repository}@{Digest.of(raw)}")
        super().put_manifest(repository, reference, media_type, raw)


def _run_restore(
    target: SandboxRegistry,
    source: SandboxRegistry,
    refs: list[str],
    pusher_log: list[str],
    die_after: int | None,
    journal: Path,
) -> None:
    references = [Reference.parse(r) for r in refs]
    with open_registry(target.host) as registry, open_registry(source.host) as upstream:
        report = verify(references, lambda _h: registry, VerifyOptions(deep=True))
        planner = Planner(registry, [RegistrySource(upstream)], damage_from_report(report))
        plan = planner.build([Wanted(r.repository, r.tag, r.digest) for r in references])
        apply_plan(
            plan.steps,
            registry,
            [RegistrySource(upstream)],
            writes.Journal(journal),
            workers=1,
            manifests_by_digest=planner.manifest_bytes,
            pusher=_RecordingPusher(registry, pusher_log, die_after),
        )


@pytest.mark.parametrize("die_after", [10, 33])  # among the blobs; among the manifests
def test_restore_killed_mid_push_resumes_without_pushing_twice(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
    die_after: int,
) -> None:
    target, source = fresh_registry, second_registry
    seeded, _ = seed(target), seed(source)
    assert target.garbage_collect(delete_untagged=True).returncode == 0
    refs = seeded.refs(target.host)
    first: list[str] = []
    journal = tmp_path / "j.jsonl"
    with pytest.raises(_Killed):
        _run_restore(target, source, refs, first, die_after=die_after, journal=journal)
    assert len(first) == die_after
    second: list[str] = []
    _run_restore(target, source, refs, second, die_after=None, journal=journal)
    assert second and not set(first) & set(second)  # nothing verified is pushed again
    assert_children_first(journal_steps(journal), seeded)
    assert main(["verify", "--deep", *refs]) == 0
    third: list[str] = []
    _run_restore(target, source, refs, third, die_after=None, journal=journal)
    assert third == []


def test_restore_from_a_scan_report_and_with_all(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, source = fresh_registry, second_registry
    seeded, _ = seed(target), seed(source)
    assert target.garbage_collect(delete_untagged=True).returncode == 0
    assert main(["scan", "--format", "json", str(target.root)]) == 1
    report = tmp_path / "scan.json"
    report.write_text(capsys.readouterr().out)
    journal = str(tmp_path / "j.jsonl")
    args = ["--from", source.host, "--registry", target.host, "--journal", journal]
    assert restore("--from-report", str(report), *args, "--apply") == 0
    capsys.readouterr()
    # The report names the referrers tag too, so the SBOM the GC took is back as well.
    assert main(["verify", "--deep", *seeded.refs(target.host)]) == 0
    assert restore("--from-report", str(report), *args) == 0  # nothing left to do

    # --all walks every repository and tag of the registry.
    layer = seeded.api.children[0].layer_digests[0]
    faults.remove_blob_data(target.root, layer)
    everything = ["--all", target.host, "--from", source.host, "--journal", journal]
    assert restore(*everything) == 1
    assert layer in capsys.readouterr().out
    assert restore(*everything, "--apply") == 0
    assert restore(*everything) == 0
    capsys.readouterr()
    assert main(["verify", "--deep", *seeded.refs(target.host)]) == 0


@pytest.mark.both_registries
def test_rebuild_plan_names_every_image_sharing_a_lost_layer(
    fresh_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = fresh_registry
    one = images.push_index(target.url, "team/one", "v1", shared_layers=["common"])
    two = images.push_index(target.url, "team/two", "v2", shared_layers=["common"])
    common = one.children[0].layer_digests[0]
    assert common in two.children[0].layer_digests
    faults.remove_blob_data(target.root, common)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (empty / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    refs = [f"{target.host}/team/one:v1", f"{target.host}/team/two:v2"]
    assert restore(*refs, "--from", f"oci:{empty}", "--format", "json") == 1
    plan = json.loads(capsys.readouterr().out)
    assert plan["steps"] == []
    lost = {(i["repository"], i["digest"]): i for i in plan["rebuild"]}
    item = lost[("team/one", common)]
    assert item["tags"] == [{"reference": "team/one:v1", "digest": one.digest}]
    assert item["platforms"] == ["linux/amd64", "linux/arm/v7", "linux/arm64"]
    assert item["shared_with"] == ["team/two:v2"]
    assert restore(*refs, "--from", f"oci:{empty}") == 1
    text = capsys.readouterr().out
    assert f"breaks team/one:v1 (was {one.digest})" in text
    assert "also used by: team/two:v2" in text


def test_restore_killed_by_the_os_mid_push_resumes(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
) -> None:
    """A real abrupt exit (os._exit after the 12th write, as SIGKILL would) of the CLI."""
    target, source = fresh_registry, second_registry
    seeded, _ = seed(target), seed(source)
    assert target.garbage_collect(delete_untagged=True).returncode == 0
    refs = seeded.refs(target.host)
    journal = tmp_path / "j.jsonl"
    command = [
        sys.executable,
        "-m",
        "shipsure.cli.main",
        "restore",
        *refs,
        "--from",
        source.host,
        "--apply",
        "--journal",
        str(journal),
        "--concurrency",
        "1",  # one writer at a time, so the crash point is one exact step
    ]
    env = {**os.environ, writes.CRASH_ENV: "after-run:12"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr
    first = journal_steps(journal)
    done_first = {e["target"] for e in first if e["state"] == "done"}
    open_intent = {e["target"] for e in first if e["state"] == "intent"} - done_first
    assert len(done_first) == 11 and len(open_intent) >= 1
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    second = journal_steps(journal)[len(first) :]
    done_second = {e["target"] for e in second if e["state"] == "done"}
    assert done_second and not done_first & done_second
    # The write the kill interrupted had taken effect: settled as already done, not redone.
    settled = {e["target"]: e["state"] for e in second if e["target"] in open_intent}
    assert set(settled.values()) <= {"already-done"}, settled
    assert_children_first(first + second, seeded)
    assert main(["verify", "--deep", *refs]) == 0


@pytest.mark.both_registries
def test_corrupted_content_is_named_until_its_data_file_is_removed(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """distribution never overwrites an existing data file: a re-push of a corrupted layer
    or manifest is accepted and changes nothing. restore says so instead of claiming
    success; once the data files are removed, the same restore repairs both."""
    target, source = fresh_registry, second_registry
    seeded, _ = seed(target), seed(source)
    child = seeded.app.children[0]
    layer = child.layer_digests[0]
    faults.corrupt_blob(target.root, layer)
    faults.corrupt_manifest(target.root, child.digest)
    ref = f"{target.host}/team/app:latest"
    journal = str(tmp_path / "j.jsonl")
    args = [ref, "--from", source.host, "--apply", "--journal", journal, "--format", "json"]
    assert restore(*args) == 1
    result = json.loads(capsys.readouterr().out)
    assert f"team/app@{child.digest}" in result["not_replaced"]
    assert main(["verify", "--deep", ref]) == 1
    capsys.readouterr()

    faults.blob_data_path(target.root, child.digest).unlink()
    assert restore(*args) == 1
    assert json.loads(capsys.readouterr().out)["not_replaced"] == [f"team/app@{layer}"]
    faults.blob_data_path(target.root, layer).unlink()
    assert restore(*args) == 0
    assert json.loads(capsys.readouterr().out)["not_replaced"] == []
    assert main(["verify", "--deep", ref]) == 0


@pytest.mark.both_registries
def test_a_blob_intact_in_another_repository_is_mounted(
    fresh_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = fresh_registry
    one = images.push_index(target.url, "team/one", "v1", shared_layers=["common"])
    images.push_index(target.url, "team/two", "v2", shared_layers=["common"])
    common = one.children[0].layer_digests[0]
    faults.remove_layer_link(target.root, "team/one", common)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (empty / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    refs = [f"{target.host}/team/one:v1", f"{target.host}/team/two:v2"]
    journal = str(tmp_path / "j.jsonl")
    args = [*refs, "--from", f"oci:{empty}", "--journal", journal, "--format", "json"]
    assert restore(*args) == 1
    plan = json.loads(capsys.readouterr().out)
    assert [(s["op"], s["digest"], s["from"]) for s in plan["steps"]] == [
        ("mount-blob", common, "repository:team/two")
    ]
    assert plan["bytes"] == 0
    assert restore(*args, "--apply") == 0
    capsys.readouterr()
    assert main(["verify", "--deep", *refs]) == 0


def test_a_scan_report_with_verify_content_vouches_for_a_mount(
    fresh_registry: SandboxRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `scan --verify-content` hashed every blob: its report vouches for the intact copy in
    # another repository, as `verify --deep` does, so the lost link is mounted back.
    target = fresh_registry
    one = images.push_index(target.url, "team/one", "v1", shared_layers=["common"])
    two = images.push_index(target.url, "team/two", "v2", shared_layers=["common"])
    common = one.children[0].layer_digests[0]
    faults.remove_layer_link(target.root, "team/one", common)
    # team/two is in the report too (a copy is found among the trees the report names).
    faults.remove_blob_data(target.root, two.children[0].config_digest)
    scan = ["scan", "--recheck-delay=0", "--verify-content", "--format", "json"]
    assert main([*scan, str(target.root)]) == 1
    report = tmp_path / "scan.json"
    report.write_text(capsys.readouterr().out)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (empty / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    args = ["--from-report", str(report), "--registry", target.host, "--from", f"oci:{empty}"]
    assert restore(*args, "--format", "json") == 1
    plan = json.loads(capsys.readouterr().out)
    steps = [(s["op"], s["digest"], s["from"]) for s in plan["steps"]]
    assert ("mount-blob", common, "repository:team/two") in steps


def test_a_dangling_tag_comes_back_with_the_digest_it_had(
    fresh_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The tag's manifest data is gone (HEAD 404) and the source's tag has moved on since:
    from a scan report, which still knows the digest on disk, the original comes back;
    from a verify walk, which cannot know it, the source's tag is used and the plan says so."""
    target, source = fresh_registry, second_registry
    original = images.push_index(target.url, "team/app", "latest")
    images.push_index(source.url, "team/app", "latest")
    moved = images.push_index(source.url, "team/app", "latest", seed="a newer build")
    assert moved.digest != original.digest
    faults.dangle_tag(target.root, "team/app", "latest")
    ref = f"{target.host}/team/app:latest"
    assert main(["scan", "--format", "json", str(target.root)]) == 1
    report = tmp_path / "scan.json"
    report.write_text(capsys.readouterr().out)

    verify_plan = [ref, "--from", source.host, "--format", "json"]
    assert restore(*verify_plan) == 1
    planned = json.loads(capsys.readouterr().out)
    assert planned["steps"][-1]["op"] == "put-tag"
    assert planned["steps"][-1]["digest"] == moved.digest
    assert any("digest is unknown" in note for note in planned["notes"])

    journal = str(tmp_path / "j.jsonl")
    args = ["--from-report", str(report), "--registry", target.host, "--from", source.host]
    assert restore(*args, "--apply", "--journal", journal) == 0
    capsys.readouterr()
    assert main(["verify", "--deep", f"{ref}@{original.digest}"]) == 0
