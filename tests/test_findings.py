"""The one table of finding kinds: every kind a command emits is in it, and the README's
tables say what it says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shipsure import findings
from shipsure.checks import verify
from shipsure.checks.scan import kinds as scan_kinds
from shipsure.findings import (
    GC_CHECK,
    KINDS,
    LINT,
    PROBE,
    SCAN,
    SERVE,
    VERIFY,
    kinds_of,
    markdown_table,
)

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


# The code that makes each command's findings. probe and serve walk with verify's walk.
_WALK_SOURCES = ["checks/verify.py"]
SOURCES: dict[str, list[str]] = {
    VERIFY: _WALK_SOURCES,
    PROBE: ["checks/probe.py", *_WALK_SOURCES],
    SERVE: ["serve/watcher.py", "checks/probe.py", *_WALK_SOURCES],
    SCAN: ["checks/scan/*.py"],
    LINT: ["lint/*.py"],
    GC_CHECK: ["gc/*.py", "cli/gc_check.py"],
}
# Kinds the walk gives only for an input: `--platform` filters, a `tag@digest` reference.
WALK_INPUT_KINDS = {"platforms": "platform-not-found", "pinned tag": "tag-moved"}
# The files where probe and serve choose what their walks are given.
WALK_CALLERS = {
    PROBE: ["checks/probe.py", "cli/probe.py"],
    SERVE: ["serve/watcher.py", "cli/serve.py", "checks/probe.py", "cli/probe.py"],
}


def _trees(patterns: list[str]) -> list[ast.Module]:
    paths = [p for pattern in patterns for p in sorted((ROOT / "shipsure").glob(pattern))]
    assert paths, patterns
    return [ast.parse(p.read_text()) for p in paths]


def _kinds_named(patterns: list[str]) -> set[str]:
    """The ids of the kinds the code names: by their constant (`TAG_MOVED`,
    `k.BLOB_MISSING`, `CHECK_ERROR`) or spelled out. Module-level assignments are passed
    over: they define or group the constants; findings are made in functions."""
    ids = {k.id for k in KINDS}
    constants = {
        name: value
        for module in (findings, verify, scan_kinds)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and value in ids
    }
    named = set()
    for tree in _trees(patterns):
        for statement in tree.body:
            if isinstance(statement, ast.Assign | ast.AnnAssign):
                continue
            for node in ast.walk(statement):
                if isinstance(node, ast.Constant) and node.value in ids:
                    named.add(node.value)
                name = getattr(node, "id", None) or getattr(node, "attr", None)
                if isinstance(node, ast.Name | ast.Attribute) and name in constants:
                    named.add(constants[name])
    return named


def _walk_inputs(patterns: list[str]) -> set[str]:
    """Which of WALK_INPUT_KINDS's inputs the code can give a walk: a `platforms` option;
    a reference parsed from text (`Reference.parse`, `image_reference`), or made
    (`Reference(...)`) with both a tag and a digest."""
    given = set()
    for tree in _trees(patterns):
        for node in ast.walk(tree):
            if "platforms" in (getattr(node, "id", None), getattr(node, "attr", None)) or (
                isinstance(node, ast.keyword) and node.arg == "platforms"
            ):
                given.add("platforms")
            if not isinstance(node, ast.Call):
                continue
            # image_reference: the command line's reading of a reference (cli/common.py).
            if ast.unparse(node.func) in ("Reference.parse", "image_reference"):
                given.add("pinned tag")
            if ast.unparse(node.func) == "Reference":
                fields = ["registry", "repository", "tag", "digest"]
                args = dict(zip(fields, node.args, strict=False))
                args |= {k.arg: k.value for k in node.keywords if k.arg}
                if all(
                    a in args and not (isinstance(args[a], ast.Constant) and args[a].value is None)
                    for a in ("tag", "digest")
                ):
                    given.add("pinned tag")
    return given


@pytest.mark.parametrize("command", list(SOURCES))
def test_the_table_lists_every_kind_a_command_emits(command: str) -> None:
    emitted = _kinds_named(SOURCES[command])
    for given, kind_id in WALK_INPUT_KINDS.items():
        if command in WALK_CALLERS and given not in _walk_inputs(WALK_CALLERS[command]):
            emitted.discard(kind_id)
    assert {k.id for k in kinds_of(command)} == emitted


def test_a_walk_input_gives_its_kind() -> None:
    """The rule above is read from the code: verify is given both inputs, and the walk
    names both kinds."""
    assert set(WALK_INPUT_KINDS) <= _walk_inputs(["checks/verify.py", "cli/verify.py"])
    assert set(WALK_INPUT_KINDS.values()) <= _kinds_named(_WALK_SOURCES)


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
