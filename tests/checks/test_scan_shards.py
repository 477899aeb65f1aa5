"""`--shard I/N` plus `shipsure report merge` gives the same findings as one scan."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from shipsure.checks.scan import Shard
from shipsure.checks.scan import kinds as k
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
