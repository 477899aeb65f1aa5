"""The one table of finding kinds: every kind a command emits is in it, and the README's
tables say what it says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shipsure.checks import verify
from shipsure.checks.scan import kinds as scan_kinds
from shipsure.findings import KINDS, LINT, SCAN, VERIFY, kinds_of, markdown_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [VERIFY, SCAN])
def test_readme_tables_match_the_table(command: str) -> None:
    readme = (ROOT / "README.md").read_text()
    table = markdown_table(command)
    assert table in readme, f"README.md's {command} table should read:\n{table}"


def test_ids_are_unique_kebab_case() -> None:
    ids = [k.id for k in KINDS]
    assert len(ids) == len(set(ids))
    assert all(i == i.lower() and " " not in i and i.strip("-") == i for i in ids)


def test_modules_name_only_kinds_of_their_command() -> None:
    verify_ids = {v for n, v in vars(verify).items() if n.isupper() and isinstance(v, str)}
    verify_ids = {v for v in verify_ids if any(k.id == v for k in KINDS)}
    assert verify_ids | {"check-error"} == {k.id for k in kinds_of(VERIFY)}
    assert {k.id for k in kinds_of(SCAN)} == scan_kinds.ALL
    assert {k.id for k in kinds_of(LINT)} == {"check-error"}


def test_no_kind_is_spelled_outside_the_table() -> None:
    """A kind id written as a string literal in checks/ (other than to look it up in the
    table, `kind("...")`) would bypass the table."""
    ids = {k.id for k in KINDS}
    for path in (ROOT / "shipsure" / "checks").rglob("*.py"):
        tree = ast.parse(path.read_text())
        looked_up = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "kind"
            for arg in node.args
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in ids and id(node) not in looked_up:
                pytest.fail(f"{path.name}: kind {node.value!r} spelled out; use the table")
