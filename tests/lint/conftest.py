"""Run `shipsure lint` in-process on files written for the test."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipsure.cli.main import main

EXAMPLES = Path(__file__).parent / "examples"

Hit = tuple[str, str, int]  # (rule, path relative to the linted root, line)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture
def lint_json(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`lint_json(*args)` -> (exit code, parsed JSON output)."""

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = main(["lint", "--format", "json", *args])
        return code, json.loads(capsys.readouterr().out)

    return run


@pytest.fixture
def lint_tree(
    tmp_path: Path, lint_json: Callable[..., tuple[int, dict[str, Any]]]
) -> Callable[..., list[Hit]]:
    """`lint_tree(files, *args)`: write `files` into a fresh folder, lint it, return hits."""
    counter = iter(range(1000))

    def run(files: dict[str, str], *args: str) -> list[Hit]:
        root = write_tree(tmp_path / f"repo{next(counter)}", files)
        _, data = lint_json(*args, str(root))
        prefix = f"{root}/"
        return [(f["rule"], f["path"].removeprefix(prefix), f["line"]) for f in data["findings"]]

    return run
