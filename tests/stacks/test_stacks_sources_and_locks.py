"""The module-source scanner against python-hcl2, and `stacks locks list|break`."""

from __future__ import annotations

import json
from pathlib import Path

import hcl2
import pytest
from stack_helpers import commit, init_repo

from shipsure.cli.main import main
from shipsure.stacks.locks import open_backend
from shipsure.stacks.sources import HclScanError, lenient_sources, scan_sources

SAMPLES = [
    'module "a" {\n  source = "../a"\n}\n',
    'module "a" { source = "./a" }\nmodule "b" {\n  source = "git::https://x/y.git?ref=v1"\n}\n',
    '# module "old" { source = "../old" }\n/* module "c" { source = "../c" } */\n'
    'module "d" {\n  source = "../d" // trailing\n  n = 1\n}\n',
    'locals {\n  doc = <<EOT\nmodule "x" { source = "../fake" }\nEOT\n'
    '  m = { a = "}", b = [1,\n 2] }\n}\n'
    'module "e" {\n  source   = "../e"\n'
    '  for_each = { for k, v in var.m : k => v if v != "{" }\n}\n',
    'resource "null" "n" {\n  provisioner "file" {\n    source = "../not-a-module"\n  }\n}\n',
    'terraform {\n  source = "../../modules//app"\n}\n'
    "include { path = find_in_parent_folders() }\n",
    'module "t" {\n  source = "../${var.x}"\n}\n',
]


def hcl2_sources(text: str) -> list[str]:
    """What python-hcl2 (v8 keeps the quotes) sees as module/terraform sources."""
    tree = hcl2.loads(text)
    found = []
    for block in tree.get("module", []):
        for body in block.values():
            found.append(body["source"])
    for body in tree.get("terraform", []):
        if "source" in body:
            found.append(body["source"])
    return [s[1:-1] for s in found if s.startswith('"') and "${" not in s]


@pytest.mark.parametrize("text", SAMPLES)
def test_scanner_agrees_with_python_hcl2(text: str) -> None:
    assert sorted(scan_sources(text)) == sorted(hcl2_sources(text))


@pytest.mark.parametrize(
    "text", ['module "a" {\n  source = "../a"\n', 'x = "unterminated\n', "/* open", "}\n"]
)
def test_malformed_files_are_refused_and_lenient_fallback_reads_them(text: str) -> None:
    with pytest.raises(HclScanError):
        scan_sources(text)
    lenient_sources(text)  # never raises


@pytest.fixture
def lock_repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    init_repo(root)
    commit(root, {"stacks/a/main.tf": "locals {}\n"})
    return root


def test_locks_list_and_break_with_plan_then_apply(
    lock_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"file://{lock_repo}/.shipsure/locks"
    backend = open_backend(url)
    try:
        backend.acquire("stacks/a", "runner-1", ttl=600, note="pipeline 42")
        base = ["--repo", str(lock_repo), "--lock-url", url]
        assert main(["stacks", "locks", "list", *base, "--format", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)["locks"]
        assert [(entry["key"], entry["owner"], entry["stale"]) for entry in listed] == [
            ("stacks/a", "runner-1", False)
        ]
        assert main(["stacks", "locks", "break", "stacks/a", *base]) == 0
        assert "would break lock 'stacks/a' held by runner-1" in capsys.readouterr().out
        assert backend.get("stacks/a") is not None  # nothing done without --apply
        assert main(["stacks", "locks", "break", "stacks/a", *base, "--apply"]) == 0
        assert "broke lock 'stacks/a'" in capsys.readouterr().out
        assert backend.get("stacks/a") is None
        journal = (lock_repo / ".shipsure/state/journal.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in journal]
        assert [(r["state"], r["target"], r["facts"]["owner"]) for r in records] == [
            ("intent", "stacks/a", "runner-1"),
            ("done", "stacks/a", "runner-1"),
        ]
        assert main(["stacks", "locks", "list", *base]) == 0
        assert capsys.readouterr().out == "no locks held\n"
    finally:
        backend.close()


def test_lock_owner_and_note_are_escaped_when_breaking(
    lock_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whoever wrote the lock chose its owner and note: `locks list` escaped them, `locks
    # break` printed them raw (ESC recoloured the terminal, a newline forged a line).
    url = f"file://{lock_repo}/.shipsure/locks"
    backend = open_backend(url)
    try:
        backend.acquire("stacks/a", "runner\x1b[31m", ttl=600, note="ci\nbroke lock 'x'")
        base = ["stacks", "locks", "break", "stacks/a", "--repo", str(lock_repo), "--lock-url", url]
        for argv in (base, [*base, "--apply"]):
            assert main(argv) == 0
            out = capsys.readouterr().out
            assert "\x1b" not in out and "runner\\x1b[31m" in out, out
            assert "(ci\\nbroke lock 'x')" in out
    finally:
        backend.close()


def test_bad_lock_url_is_a_usage_error(lock_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["stacks", "locks", "list", "--repo", str(lock_repo), "--lock-url", "bogus://x"]
    assert main(argv) == 2
    assert "unknown scheme" in capsys.readouterr().err
