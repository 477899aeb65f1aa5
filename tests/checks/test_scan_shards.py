"""`--shard I/N` plus `shipsure report merge` gives the same findings as one scan."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.shard import Shard
from shipsure.cli.main import main
from shipsure.sandbox import faults
from shipsure.sandbox.synthetic import SyntheticSpec, generate


def _findings(doc: dict[str, object]) -> set[tuple[object, ...]]:
    items = doc["findings"]
    assert isinstance(items, list)
    return {(f["kind"], f["repository"], f["digest"], f["reference"]) for f in items}


def test_sharded_scan_merged_equals_one_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"
    tree = generate(root, SyntheticSpec(repositories=6, tags=2, platforms=2, layers=1))
    repo = tree.repositories[0]
    faults.remove_blob_data(root, tree.tag(repo, "v0").children[0].layers[1])
    gone = tree.tag(tree.repositories[3], "v1")
    shutil.rmtree(faults.tag_folder(root, gone.repository, "v1"))
    for d in (gone.index, *(c.digest for c in gone.children)):
        faults.remove_revision_link(root, gone.repository, d)
    old = 1_000_000_000.0
    for t in (gone,):
        os.utime(faults.blob_data_path(root, t.index), (old, old))

    assert main(["scan", "--recheck-delay=0", str(root), "--format", "json"]) == 1
    whole = json.loads(capsys.readouterr().out)
    assert (k.BLOB_UNREFERENCED, None, gone.index, None) in _findings(whole)

    parts = []
    for i in range(3):
        main(["scan", "--recheck-delay=0", str(root), "--format", "json", "--shard", f"{i}/3"])
        part = tmp_path / f"part-{i}.json"
        part.write_text(capsys.readouterr().out)
        parts.append(str(part))
    assert main(["report", "merge", "--format", "json", *parts]) == 1
    merged = json.loads(capsys.readouterr().out)
    assert _findings(merged) == _findings(whole)
    assert merged["checked"]["repositories"] == 6

    assert main(["report", "merge", *parts[:2]]) == 2
    assert "2/3 missing" in capsys.readouterr().err
    assert main(["report", "merge", parts[0], parts[0], parts[1], parts[2]]) == 2
    (tmp_path / "bad.json").write_text("{")
    assert main(["report", "merge", str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_shards_split_repositories_deterministically() -> None:
    names = [f"team/app{i}" for i in range(100)]
    owners = [[Shard(i, 4).owns(n) for i in range(4)] for n in names]
    assert all(sum(o) == 1 for o in owners)
    assert all(any(o[i] for o in owners) for i in range(4))


def _sharded(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], n: int = 3
) -> tuple[dict[str, object], dict[str, object]]:
    """(the whole scan's JSON report, the merged JSON report of `n` shards)."""
    scan = ["scan", "--recheck-delay=0", "--workers=1", str(root), "--format", "json"]
    main(scan)
    whole = json.loads(capsys.readouterr().out)
    parts = []
    for i in range(n):
        main([*scan, "--shard", f"{i}/{n}"])
        part = tmp_path / f"part-{i}.json"
        part.write_text(capsys.readouterr().out)
        parts.append(str(part))
    main(["report", "merge", "--format", "json", *parts])
    return whole, json.loads(capsys.readouterr().out)


def _full(doc: dict[str, object]) -> list[tuple[object, ...]]:
    items = doc["findings"]
    assert isinstance(items, list)
    return sorted(
        (f["kind"], f["repository"], f["digest"], f["reference"], f.get("storage_path"))
        for f in items
    )


def test_a_link_every_shard_met_is_one_finding_in_the_merged_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"
    generate(root, SyntheticSpec(repositories=6, tags=1, platforms=1, layers=1))
    blobs = root / "docker/registry/v2/blobs"
    shutil.move(blobs, tmp_path / "outside")
    blobs.symlink_to(tmp_path / "outside")
    whole, merged = _sharded(root, tmp_path, capsys)
    links = [f for f in merged["findings"] if f["kind"] == k.LINK_OUTSIDE_ROOT]  # type: ignore[attr-defined]
    assert [f["storage_path"] for f in links] == ["docker/registry/v2/blobs"]
    assert _full(merged) == _full(whole)


def test_distinct_faults_without_a_digest_all_survive_the_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two unreadable tag links of one repository (a folder where the file belongs) and two
    # stale temp files beside blob data: same kind, same repository, no digest.
    root = tmp_path / "storage"
    tree = generate(root, SyntheticSpec(repositories=3, tags=2, platforms=1, layers=1))
    repo = tree.repositories[1]
    for tag in ("v0", "v1"):
        link = faults.tag_current_link_path(root, repo, tag)
        link.unlink()
        link.mkdir()
    old = 1_000_000_000.0
    for n in ("1", "2"):
        folder = faults.blob_folder(root, "sha256:" + n * 64)  # a write cut short: no data
        folder.mkdir(parents=True)
        temp = folder / "data.0f8fad5b-d9cb-469f-a165-70867728950e.tmp"
        temp.write_bytes(b"half")
        os.utime(temp, (old, old))
    whole, merged = _sharded(root, tmp_path, capsys)
    kinds = [f[0] for f in _full(whole)]
    assert kinds.count("check-error") == 2 and kinds.count(k.TEMP_FILE_STALE) == 2
    assert _full(merged) == _full(whole)


@pytest.mark.parametrize(
    "text", ["1/0", "4/4", "-1/4", "a/b", "1", "1/2/3", " 1/2", "+1/2", "1_0/20", "1/２", "١/2", ""]
)
def test_a_shard_is_ascii_i_slash_n_or_a_usage_error(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["scan", f"--shard={text}", str(tmp_path)])
    assert exited.value.code == 2
    assert "want I/N" in capsys.readouterr().err


def _hostile(doc: dict[str, Any], change: str) -> None:
    scan = doc["scan"]
    match change:
        case "checked-list":
            doc["checked"] = [1]
        case "referenced-int":
            scan["referenced"] = 5
        case "referenced-not-digests":
            scan["referenced"] = ["../x"]
        case "candidates-list":
            scan["blob_candidates"] = ["x"]
        case "candidate-not-a-digest":
            scan["blob_candidates"] = {"../../etc": 5}
        case "candidate-size-text":
            scan["blob_candidates"] = {"sha256:" + "a" * 64: "big"}
        case "candidate-size-huge":
            scan["blob_candidates"] = {"sha256:" + "a" * 64: 10**400}
        case "unknown-text":
            scan["unknown_references"] = "x"
        case "older-version":
            del scan["unknown_references"]
        case "other-options":
            doc["options"]["verify_content"] = True


HOSTILE = [
    "checked-list",
    "referenced-int",
    "referenced-not-digests",
    "candidates-list",
    "candidate-not-a-digest",
    "candidate-size-text",
    "candidate-size-huge",
    "unknown-text",
    "older-version",
    "other-options",
]


@pytest.mark.parametrize("change", HOSTILE)
def test_a_shard_report_that_does_not_fit_is_bad_input_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    root = tmp_path / "storage"
    generate(root, SyntheticSpec(repositories=2, tags=1, platforms=1, layers=1))
    parts = []
    for i in range(2):
        main(["scan", "--recheck-delay=0", str(root), "--format", "json", "--shard", f"{i}/2"])
        parts.append(json.loads(capsys.readouterr().out))
    _hostile(parts[0], change)
    names = []
    for i, doc in enumerate(parts):
        names.append(str(tmp_path / f"part-{i}.json"))
        Path(names[-1]).write_text(json.dumps(doc))
    assert main(["report", "merge", *names]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "part-" in err, err
