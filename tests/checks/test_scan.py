"""`shipsure scan` on synthetic storage: every fault kind exact, nothing on clean storage."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.findings import Report, Severity
from shipsure.sandbox import faults
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate
from shipsure.storage.filesystem import FilesystemStorage

SPEC = SyntheticSpec(repositories=3, tags=2, platforms=2, layers=1, layer_size=256)


def _scan(root: Path, **options: object) -> Report:
    # No settle time before re-checking: nothing writes to these trees while they are scanned.
    options.setdefault("recheck_delay", 0.0)
    return scan(FilesystemStorage(root), ScanOptions(**options))  # type: ignore[arg-type]


def _kinds(report: Report) -> list[tuple[str, str | None, str | None]]:
    return sorted((f.kind, f.repository, f.digest or f.reference) for f in report.findings)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStorage:
    root = tmp_path_factory.mktemp("pristine")
    return generate(root, SPEC)


@pytest.fixture
def tree(pristine: SyntheticStorage, tmp_path: Path) -> SyntheticStorage:
    """A private copy of the pristine tree to break."""
    root = tmp_path / "storage"
    shutil.copytree(pristine.root, root)
    copy = SyntheticStorage(root, pristine.tags, pristine.files, pristine.bytes, pristine.blobs)
    return copy


def test_clean_storage_has_no_findings(tree: SyntheticStorage) -> None:
    report = _scan(tree.root, verify_content=True, unreferenced_min_age=0)
    assert report.findings == []
    assert report.checked["repositories"] == 3
    assert report.checked["tags"] == 6
    assert report.exit_code() == 0


def test_every_fault_is_reported_with_repository_digest_and_tags(tree: SyntheticStorage) -> None:
    root = tree.root
    repo0, repo1, repo2 = tree.repositories
    t = tree.tag(repo0, "v0")
    child_a, child_b = t.children
    faults.remove_blob_data(root, child_a.layers[1])  # layer data removed, link kept
    faults.remove_layer_link(root, repo0, child_b.layers[1])  # _layers link removed
    faults.remove_revision_link(root, repo0, child_b.digest)  # child link removed: relinkable
    t1 = tree.tag(repo0, "v1")
    faults.remove_manifest_data(root, t1.children[0].digest)  # child data removed
    faults.dangle_tag(root, repo1, "v1")  # tag -> no data
    u = tree.tag(repo2, "v0")
    faults.remove_blob_data(root, u.children[0].config)  # config data removed
    faults.corrupt_blob(root, u.children[1].layers[1])  # same size, wrong bytes
    faults.corrupt_manifest(root, tree.tag(repo2, "v1").children[1].digest)
    upload = faults.plant_stale_upload(root, repo2, age_days=9)

    report = _scan(root, verify_content=True)
    by_kind = {(f.kind, f.repository, f.digest or f.reference): f for f in report.findings}
    expected = {
        (k.BLOB_MISSING, repo0, child_a.layers[1]),
        (k.LAYER_LINK_MISSING, repo0, child_b.layers[1]),
        (k.INDEX_CHILD_RELINKABLE, repo0, child_b.digest),
        (k.REVISION_DATA_MISSING, repo0, t1.children[0].digest),
        (k.TAG_MANIFEST_MISSING, repo1, tree.tag(repo1, "v1").index),
        (k.BLOB_MISSING, repo2, u.children[0].config),
        (k.BLOB_DIGEST_MISMATCH, repo2, u.children[1].layers[1]),
        (k.MANIFEST_DIGEST_MISMATCH, repo2, tree.tag(repo2, "v1").children[1].digest),
        (k.UPLOAD_STALE, repo2, upload),
    }
    assert set(by_kind) == expected
    assert by_kind[(k.BLOB_MISSING, repo0, child_a.layers[1])].details["tags"] == ["v0"]
    relinkable = by_kind[(k.INDEX_CHILD_RELINKABLE, repo0, child_b.digest)]
    assert relinkable.details["relinkable"] is True
    assert relinkable.path[:2] == ("tag v0", f"index {t.index}")
    assert relinkable.severity == Severity.ERROR
    assert by_kind[(k.TAG_MANIFEST_MISSING, repo1, tree.tag(repo1, "v1").index)].severity == (
        Severity.CRITICAL
    )
    # The shared base layer is fine; only the broken pieces are reported.
    assert len(report.findings) == len(expected)


def test_worker_processes_report_exactly_what_one_process_reports(
    tree: SyntheticStorage,
) -> None:
    root = tree.root
    repo0, repo1, repo2 = tree.repositories
    t = tree.tag(repo0, "v0")
    faults.remove_blob_data(root, t.children[0].layers[1])  # shared by nothing else
    faults.remove_revision_link(root, repo0, t.children[1].digest)
    faults.dangle_tag(root, repo1, "v1")
    faults.corrupt_blob(root, tree.tag(repo2, "v0").children[1].layers[1])
    faults.plant_stale_upload(root, repo2, age_days=9)

    reports = {
        workers: _scan(root, verify_content=True, workers=workers, unreferenced_min_age=0)
        for workers in (1, 3)
    }
    one, three = (reports[w].to_dict() for w in (1, 3))
    assert one["findings"] and one["findings"] == three["findings"]
    assert one["checked"] == three["checked"]


def test_a_worker_process_that_dies_is_one_error_not_a_hang(
    tree: SyntheticStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipsure.checks.scan import walk as scan_walk
    from shipsure.errors import CouldNotRunError

    monkeypatch.setattr(scan_walk.RepositoryWalk, "run", lambda self: os._exit(9))
    with pytest.raises(CouldNotRunError, match="worker process died"):
        _scan(tree.root, workers=2)


def test_untagged_revision_with_missing_data_is_a_warning(tree: SyntheticStorage) -> None:
    repo = tree.repositories[0]
    old = tree.tag(repo, "v0")
    shutil.rmtree(faults.tag_folder(tree.root, repo, "v0"))  # untag v0
    faults.remove_untagged_revision_data(tree.root, repo, old.index)
    report = _scan(tree.root)
    assert _kinds(report) == [(k.REVISION_DATA_MISSING, repo, old.index)]
    assert report.findings[0].severity == Severity.WARNING
    assert report.findings[0].details["tags"] == []


def test_malformed_links_are_findings_not_crashes(tree: SyntheticStorage) -> None:
    root, repo = tree.root, tree.repositories[1]
    t = tree.tag(repo, "v0")
    faults.tag_current_link_path(root, repo, "v1").write_bytes(b"sha256:nothex\n")
    faults.layer_link_path(root, repo, t.children[0].config).write_bytes(b"")
    faults.revision_link_path(root, repo, t.children[1].digest).write_bytes(b"garbage")
    report = _scan(root)
    kinds = _kinds(report)
    assert kinds == sorted(
        [
            (k.MALFORMED_LINK, repo, "v1"),
            (k.MALFORMED_LINK, repo, t.children[0].config),
            (k.MALFORMED_LINK, repo, t.children[1].digest),
        ]
    )


def test_tag_naming_a_digest_without_revision_link(tree: SyntheticStorage) -> None:
    repo = tree.repositories[0]
    t = tree.tag(repo, "v1")
    faults.remove_revision_link(tree.root, repo, t.index)
    report = _scan(tree.root)
    assert _kinds(report) == [(k.TAG_REVISION_MISSING, repo, t.index)]
    finding = report.findings[0]
    assert finding.severity == Severity.CRITICAL and finding.details["relinkable"] is True


def test_dangling_layer_link_and_unreferenced_blob(tree: SyntheticStorage) -> None:
    root, repo = tree.root, tree.repositories[0]
    t = tree.tag(repo, "v1")
    # Untag v1 and drop its revisions: its own blobs are now unreferenced (GC candidates).
    shutil.rmtree(faults.tag_folder(root, repo, "v1"))
    for d in (t.index, *(c.digest for c in t.children)):
        faults.remove_revision_link(root, repo, d)
    own = t.children[0].layers[1]
    faults.remove_blob_data(root, own)
    report = _scan(root, unreferenced_min_age=0)
    kinds = {f.kind for f in report.findings}
    assert kinds == {k.LAYER_LINK_DANGLING, k.BLOB_UNREFERENCED}
    dangling = [f for f in report.findings if f.kind == k.LAYER_LINK_DANGLING]
    assert [(f.repository, f.digest) for f in dangling] == [(repo, own)]
    unreferenced = {f.digest for f in report.findings if f.kind == k.BLOB_UNREFERENCED}
    assert t.index in unreferenced and own not in unreferenced
    assert all(f.details["bytes"] > 0 for f in report.findings if f.kind == k.BLOB_UNREFERENCED)
    # A fresh blob (a push in progress) is not a GC candidate under the default grace time.
    assert not [f for f in _scan(root).findings if f.kind == k.BLOB_UNREFERENCED]


def test_apply_relinks_and_removes_stale_uploads_idempotently(
    tree: SyntheticStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, repo = tree.root, tree.repositories[0]
    t = tree.tag(repo, "v0")
    faults.remove_revision_link(root, repo, t.children[0].digest)
    faults.remove_layer_link(root, repo, t.children[1].config)
    upload = faults.plant_stale_upload(root, repo)
    journal = tmp_path / "journal.jsonl"

    assert main(["scan", "--recheck-delay=0", str(root)]) == 1
    out = capsys.readouterr().out
    assert "repair plan (3 actions" in out and "link-revision" in out
    assert not faults.revision_link_path(root, repo, t.children[0].digest).exists()  # dry

    assert main(["scan", "--recheck-delay=0", str(root), "--apply", "--journal", str(journal)]) == 1
    assert "done" in capsys.readouterr().out
    assert faults.revision_link_path(root, repo, t.children[0].digest).read_bytes() == (
        t.children[0].digest.encode()
    )
    assert not faults.upload_folder(root, repo, upload).exists()
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["state"] for e in entries].count("done") == 3

    assert main(["scan", "--recheck-delay=0", str(root), "--apply", "--journal", str(journal)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_dangling_layer_links_removed_only_with_flag(
    tree: SyntheticStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, repo = tree.root, tree.repositories[2]
    layer = tree.tag(repo, "v0").children[0].layers[1]
    faults.remove_blob_data(root, layer)
    journal = str(tmp_path / "j.jsonl")
    main(["scan", "--recheck-delay=0", str(root), "--apply", "--journal", journal])
    assert faults.layer_link_path(root, repo, layer).exists()
    main(
        [
            "scan",
            "--recheck-delay=0",
            str(root),
            "--apply",
            "--journal",
            journal,
            "--remove-dangling-layer-links",
        ]
    )
    assert not faults.layer_link_path(root, repo, layer).exists()
    assert "remove-layer-link" in capsys.readouterr().out
    # Manifests and blobs are never deleted: the tag still names its index.
    assert faults.blob_data_path(root, tree.tag(repo, "v0").index).exists()


def test_unreadable_file_is_a_check_error_not_missing(tree: SyntheticStorage) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    repo = tree.repositories[0]
    link = faults.tag_current_link_path(tree.root, repo, "v0")
    link.chmod(0)
    report = _scan(tree.root)
    assert [f.kind for f in report.findings] == ["check-error"]
    assert report.exit_code() == 3


def test_unreadable_file_via_permissions_as_root_is_a_check_error(tree: SyntheticStorage) -> None:
    # Root ignores file modes; a folder where a file should be makes read() fail with EISDIR.
    repo = tree.repositories[0]
    link = faults.tag_current_link_path(tree.root, repo, "v0")
    link.unlink()
    link.mkdir()
    report = _scan(tree.root)
    assert [
        (f.kind, f.details["storage_path"].endswith("current/link")) for f in report.findings
    ] == [("check-error", True)]
    assert report.exit_code() == 3


def test_cli_exit_codes_and_formats(
    tree: SyntheticStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--recheck-delay=0", str(tmp_path / "absent")]) == 3
    assert "absent" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    assert main(["scan", "--recheck-delay=0", str(tmp_path / "other")]) == 2
    assert "docker/registry/v2" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["scan", "--recheck-delay=0", str(tmp_path / "empty")]) == 0
    capsys.readouterr()
    faults.plant_stale_upload(tree.root, tree.repositories[0])
    assert main(["scan", "--recheck-delay=0", str(tree.root), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"][0]["kind"] == k.UPLOAD_STALE
    assert doc["repair_plan"][0]["op"] == "remove-upload"
    assert (
        main(
            [
                "scan",
                "--recheck-delay=0",
                str(tree.root),
                "--format",
                "prometheus",
                "--fail-on",
                "error",
            ]
        )
        == 0
    )
    assert 'kind="upload-stale"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--recheck-delay=0", str(tree.root), "--shard", "3/2"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--recheck-delay=-1", str(tree.root)])
    assert exit_info.value.code == 2


def test_stale_upload_threshold(tree: SyntheticStorage) -> None:
    repo = tree.repositories[0]
    faults.plant_stale_upload(tree.root, repo, age_days=2)
    assert _scan(tree.root).findings == []
    assert [f.kind for f in _scan(tree.root, upload_max_age=86400.0).findings] == [k.UPLOAD_STALE]


WHITESPACE = {"LF": b"\n", "CRLF": b"\r\n", "space": b" ", "two LF": b"\n\n"}


@pytest.mark.parametrize("where", ["tag current", "revision", "layer", "tag history"])
@pytest.mark.parametrize("around", sorted(WHITESPACE))
def test_link_with_whitespace_is_malformed_with_the_clean_digest(
    tree: SyntheticStorage, where: str, around: str
) -> None:
    """A hand-written link ending in a newline (or CRLF, spaces) names no digest the registry
    can read: one malformed-link finding, carrying the clean digest, and nothing else
    (not "revision missing" with the newline inside the digest)."""
    root, repo = tree.root, tree.repositories[2]
    t = tree.tag(repo, "v0")
    digest, path = {
        "tag current": (t.index, faults.tag_current_link_path(root, repo, "v0")),
        "revision": (
            t.children[0].digest,
            faults.revision_link_path(root, repo, t.children[0].digest),
        ),
        "layer": (t.children[1].config, faults.layer_link_path(root, repo, t.children[1].config)),
        "tag history": (t.index, faults.tag_index_link_path(root, repo, "v0", t.index)),
    }[where]
    ws = WHITESPACE[around]
    raw = (b" " + digest.encode() + ws) if around == "space" else digest.encode() + ws
    path.write_bytes(raw)
    report = _scan(root)
    assert _kinds(report) == [(k.MALFORMED_LINK, repo, digest)]
    finding = report.findings[0]
    assert finding.digest == digest
    assert finding.details["storage_path"].endswith("/link")
    assert "whitespace" in finding.message
    if where == "tag current":
        assert finding.reference == "v0" and finding.severity == Severity.CRITICAL
    if where == "tag history":
        assert finding.severity == Severity.WARNING  # the tag itself still resolves


def test_history_link_naming_another_digest_is_malformed(tree: SyntheticStorage) -> None:
    root, repo = tree.root, tree.repositories[2]
    t = tree.tag(repo, "v1")
    faults.tag_index_link_path(root, repo, "v1", t.index).write_bytes(t.children[0].digest.encode())
    report = _scan(root)
    assert _kinds(report) == [(k.MALFORMED_LINK, repo, t.index)]
    assert "whitespace" not in report.findings[0].message


def test_repair_plan_reads_typed_remedies_only(tree: SyntheticStorage) -> None:
    from shipsure.checks.scan import repair
    from shipsure.findings import Finding

    root, repo = tree.root, tree.repositories[0]
    t = tree.tag(repo, "v0")
    child = t.children[0]
    faults.remove_revision_link(root, repo, child.digest)
    faults.remove_layer_link(root, repo, t.children[1].config)
    faults.remove_blob_data(root, t.children[1].layers[-1])
    upload = faults.plant_stale_upload(root, repo, age_days=9)
    report = _scan(root)
    plan = repair.plan_repairs(report.findings)
    assert {(a.op, a.target) for a in plan} == {
        (repair.LINK_REVISION, child.digest),
        (repair.LINK_LAYER, t.children[1].config),
        (repair.REMOVE_UPLOAD, upload),
    }
    asked = repair.plan_repairs(report.findings, remove_dangling_layer_links=True)
    assert (repair.REMOVE_LAYER_LINK, t.children[1].layers[-1]) in {(a.op, a.target) for a in asked}
    # A finding that only says so in its details (e.g. read back from JSON) plans nothing.
    said = Finding(
        k.INDEX_CHILD_RELINKABLE,
        Severity.ERROR,
        "x",
        repository=repo,
        digest=child.digest,
        details={"relinkable": True},
    )
    assert repair.plan_repairs([said]) == []


def test_scan_called_from_a_thread_while_another_thread_runs(tree: SyntheticStorage) -> None:
    """A long-running server calls scan from a thread while others run: forking then could
    copy a lock another thread holds into the workers, so they come from a forkserver; the
    answer is the same as a single-threaded scan's."""
    import threading

    from shipsure.checks.scan.executor import start_method

    root, repo = tree.root, tree.repositories[1]
    faults.remove_blob_data(root, tree.tag(repo, "v1").children[0].layers[-1])
    alone = _scan(root, workers=2)
    assert alone.meta["scan"]["workers"] == "2 processes (fork)"
    stop = threading.Event()
    held = threading.Lock()

    def busy() -> None:
        while not stop.is_set():
            with held:  # a lock some other thread holds at any moment
                sum(range(1000))

    reports: list[Report] = []
    other = threading.Thread(target=busy, daemon=True)
    caller = threading.Thread(target=lambda: reports.append(_scan(root, workers=2)), daemon=True)
    other.start()
    try:
        assert start_method() != "fork"
        caller.start()
        caller.join(timeout=300)
    finally:
        stop.set()
        other.join()
    assert not caller.is_alive(), "scan from a thread did not finish"
    (threaded,) = reports
    assert threaded.meta["scan"]["workers"] in ("2 processes (forkserver)", "2 processes (spawn)")
    assert (
        _kinds(threaded)
        == _kinds(alone)
        == [(k.BLOB_MISSING, repo, tree.tag(repo, "v1").children[0].layers[-1])]
    )


def _age_tree(root: Path, seconds: float) -> None:
    """Every file and folder under root last changed `seconds` ago."""
    when = time.time() - seconds
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.utime(os.path.join(folder, name), (when, when))
    os.utime(root, (when, when))


@pytest.mark.parametrize("age", [3600.0, 0.0])
def test_recheck_waits_only_for_evidence_young_enough_to_be_a_write_in_progress(
    tree: SyntheticStorage, monkeypatch: pytest.MonkeyPatch, age: float
) -> None:
    from shipsure.checks.scan import core

    root, repo = tree.root, tree.repositories[0]
    layer = tree.tag(repo, "v1").children[0].layers[-1]
    faults.remove_blob_data(root, layer)
    if age:
        _age_tree(root, age)
    slept: list[float] = []
    monkeypatch.setattr(core, "_wait", slept.append)
    report = _scan(root, recheck_delay=0.5)
    assert _kinds(report) == [(k.BLOB_MISSING, repo, layer)]
    # Old damage is settled: reported at once. A fault whose folder just changed may be a
    # push or delete half-way: it is read again after the delay.
    assert slept == ([] if age else [0.5])


def test_no_blob_is_called_unreferenced_when_manifests_could_not_be_known(
    tree: SyntheticStorage,
) -> None:
    # A child's revision link with a newline (malformed: the collector stops on it) still
    # names the child's blobs; an unreadable revision link (a folder where the file belongs)
    # hides which manifest it is: a check-error, never "unreferenced, GC deletes it".
    repo0, repo1, _ = tree.repositories
    child = tree.tag(repo0, "v0").children[0]
    link = faults.revision_link_path(tree.root, repo0, child.digest)
    link.write_bytes(child.digest.encode() + b"\n")
    report = _scan(tree.root, unreferenced_min_age=0)
    assert {f.kind for f in report.findings} == {k.MALFORMED_LINK}

    other = tree.tag(repo1, "v1")
    faults.remove_blob_data(tree.root, other.index)  # its children are revision roots now
    hidden = faults.revision_link_path(tree.root, repo1, other.children[0].digest)
    hidden.unlink()
    hidden.mkdir()
    report = _scan(tree.root, unreferenced_min_age=0)
    kinds = [f.kind for f in report.findings]
    assert k.BLOB_UNREFERENCED not in kinds
    unknown = [f for f in report.findings if "unreferenced_not_reported" in f.details]
    assert [(f.kind, f.repository, f.details["storage_path"]) for f in unknown] == [
        ("check-error", repo1, str(hidden.relative_to(tree.root)))
    ]
