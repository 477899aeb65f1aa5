"""gc-check's verdict by tag: the tags it says a run breaks are exactly the tags that stop
pulling after the real run; the incident exits 1 before it happens; the dry-run tell-tale."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.gc.predict import check
from shipsure.gc.reach import Reachability
from shipsure.gc.tree import GCTree
from shipsure.storage.filesystem import FilesystemStorage
from shipsure.storage.inventory import discover_repositories

from . import seed


def _tag_state(root: Path) -> dict[str, tuple[bool, frozenset[str]]]:
    """tag -> (image intact, digests of its referrers present)."""
    reach = Reachability(GCTree(FilesystemStorage(root)))
    out = {}
    for t in reach.all_tags(discover_repositories(FilesystemStorage(root), [])):
        refs = frozenset(n.digest for n in t.needs if n.referrer and n.present)
        out[f"{t.repository}:{t.tag}"] = (t.intact, refs)
    return out


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "m"])
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize(
    "fault",
    [
        "clean",
        "tag-folders-deleted",
        "child-revision-removed",
        "tags-folder-gone",
        "cross-repository-child",
    ],
)
def test_broken_tags_are_the_tags_the_real_run_breaks(
    tmp_path: Path, fault: str, version: int, delete_untagged: bool
) -> None:
    if not seed.available(version):
        pytest.skip(f"needs {seed.binary(version)}")
    root = tmp_path / "storage"
    seed.seed(root, fault)
    before = _tag_state(root)
    result = check(FilesystemStorage(root), version, delete_untagged)
    real = seed.real_gc(root, version, delete_untagged, tmp_path)
    after = _tag_state(tmp_path / f"copy-v{version}-{int(delete_untagged)}")
    broken = {t for t, (ok, _) in before.items() if ok and not after[t][0]}
    named = {
        f"{f.repository}:{f.reference}" for f in result.report.findings if f.kind == "gc-breaks-tag"
    }
    assert named == broken, real.output[-1500:]
    lost_referrers = {t for t, (_, refs) in before.items() if refs - after[t][1]}
    warned = {
        f"{f.repository}:{f.reference}"
        for f in result.report.findings
        if f.kind == "gc-deletes-referrer"
    }
    assert warned == lost_referrers


def test_the_incident_exits_1_before_it_happens_and_names_every_tag(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    s = seed.seed(root, "clean")
    code, out = _run(["gc-check", str(root), "--registry-version", "2", "-m", "--format", "json"])
    assert code == 1
    doc = json.loads(out)
    named = {
        f"{f['repository']}:{f['reference']}"
        for f in doc["findings"]
        if f["kind"] == "gc-breaks-tag"
    }
    assert {f"{t.repository}:{t.tag}" for t in s.synthetic.tags} | {
        "extra/app:list",
        "extra/app:nested",
    } == named
    child = s.synthetic.tags[0].children[0].digest
    deleted = {m["digest"] for m in doc["would_delete"]["manifests"]}
    assert child in deleted and child not in doc["would_delete"]["blobs"]
    assert doc["gc"] == {
        "registry_version": 2,
        "delete_untagged": True,
        "aborted": None,
        "unknown": None,
        "version_from": "--registry-version",
    }


def test_plain_gc_on_clean_storage_breaks_nothing(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    seed.seed(root, "clean")
    code, out = _run(["gc-check", str(root), "--registry-binary", str(seed.binary(2))])
    assert code == 0, out
    assert "would delete 0 manifest revision(s), 0 blob(s)" in out


def test_v3_keeps_children_but_deletes_untagged_referrers(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    seed.seed(root, "clean")
    result = check(FilesystemStorage(root), 3, True)
    kinds = {(f.kind, f.reference) for f in result.report.findings}
    assert kinds == {("gc-deletes-referrer", "list"), ("gc-deletes-referrer", "nested")}


def test_lost_manifest_and_deeper_damage_are_warned(tmp_path: Path) -> None:
    root = tmp_path / "lost"
    s = seed.seed(root, "child-data-removed")
    result = check(FilesystemStorage(root), 2, False)
    t = s.synthetic.tags[0]
    lost = [f for f in result.report.findings if f.kind == "gc-skips-lost-manifest"]
    assert [(f.repository, f.reference, f.digest) for f in lost] == [
        (t.repository, t.tag, t.children[0].digest)
    ]
    root = tmp_path / "relinkable"
    seed.seed(root, "child-revision-removed")
    result = check(FilesystemStorage(root), 2, False)
    deeper = [f for f in result.report.findings if f.kind == "gc-deepens-damage"]
    assert [(f.repository, f.reference) for f in deeper] == [(t.repository, t.tag)]


@pytest.mark.parametrize("fault", ["tags-folder-gone", "revision-link-newline"])
def test_abort_is_reported_with_the_error(tmp_path: Path, fault: str) -> None:
    root = tmp_path / "storage"
    seed.seed(root, fault)
    code, out = _run(["gc-check", str(root), "--registry-version", "2", "-m"])
    assert code == 1
    assert "gc-would-abort" in out and "would stop: failed to mark" in out


def test_dry_run_tell_tale(tmp_path: Path) -> None:
    if not seed.available(2):
        pytest.skip(f"needs {seed.binary(2)}")
    root = tmp_path / "storage"
    s = seed.seed(root, "clean")
    import os
    import subprocess

    config = tmp_path / "config.yml"
    config.write_text(
        json.dumps({"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    dry = subprocess.run(
        [str(seed.binary(2)), "garbage-collect", "--dry-run", "-m", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    saved = tmp_path / "dry.txt"
    saved.write_text(dry.stdout)
    code, out = _run(["gc-check", "--from-dry-run", str(saved), "--format", "json"])
    assert code == 1
    doc = json.loads(out)
    flagged = {f["digest"] for f in doc["findings"] if f["kind"] == "gc-breaks-tag"}
    children = {c.digest for t in s.synthetic.tags for c in t.children}
    assert children <= flagged
    # Every flagged digest really is a manifest some tagged index references.
    assert seed.files(root)  # storage untouched by --dry-run
    if seed.available(3):
        config.write_text(
            json.dumps({"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}}})
        )
        dry3 = subprocess.run(
            [str(seed.binary(3)), "garbage-collect", "--dry-run", "-m", str(config)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        saved.write_text(dry3.stdout)
        code, out = _run(["gc-check", "--from-dry-run", str(saved)])
        assert code == 0, out


@pytest.mark.parametrize("given", ["empty", "cut-short", "fifo", "over-limit"])
def test_a_dry_run_file_that_is_not_a_whole_output_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    # Never "nothing to delete" from an empty or cut-short capture; never a wait on a FIFO.
    from shipsure.cli import gc_check

    saved = tmp_path / "dry.txt"
    match given:
        case "empty":
            saved.write_text("")
        case "cut-short":  # the marking phase only: the run was killed before its summary
            saved.write_text("team/app\nteam/app: marking manifest sha256:" + "a" * 64 + "\n")
        case "fifo":
            os.mkfifo(saved)
        case "over-limit":
            monkeypatch.setattr(gc_check, "MAX_DRY_RUN_BYTES", 10)
            saved.write_text("0 blobs marked, 0 blobs and 0 manifests eligible for deletion\n")
    assert main(["gc-check", "--from-dry-run", str(saved)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dry.txt" in err


def test_version_is_required_when_nothing_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"
    seed.seed(root, "clean")
    assert main(["gc-check", str(root)]) == 2
    assert "--registry-version" in capsys.readouterr().err


@pytest.mark.parametrize("version", [2, 3])
def test_forked_and_serial_checks_agree(tmp_path: Path, version: int) -> None:
    root = tmp_path / "storage"
    seed.seed(root, "cross-repository-child")
    storage = FilesystemStorage(root)
    forked = check(storage, version, True, parallel=True).report.to_dict()
    serial = check(storage, version, True, parallel=False).report.to_dict()
    assert forked == serial
    assert forked["would_delete"]["blobs"]
