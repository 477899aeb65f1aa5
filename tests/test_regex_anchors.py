"""No regular expression in shipsure ends in `$` without MULTILINE: Python's `$` also
matches just before a trailing newline, so `sha256:<hex>\\n` would pass as a digest.
Anchor with `\\Z` or use `fullmatch`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shipsure.errors import InvalidDigestError, InvalidReferenceError
from shipsure.model import Digest
from shipsure.registry import http
from shipsure.storage import layout

PACKAGE = Path(__file__).resolve().parents[1] / "shipsure"
HEX = "a" * 64


def _pattern_text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        value = node.value
        return value.decode() if isinstance(value, bytes) else value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
            for v in node.values
        )
    return None


def _multiline(call: ast.Call) -> bool:
    return (
        "MULTILINE" in ast.unparse(call)
        or "re.M" in ast.unparse(call)
        or "(?m" in (_pattern_text(call.args[0]) or "")
    )


def test_no_pattern_ends_in_a_dollar_anchor() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"compile", "match", "search", "fullmatch"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.args
            ):
                continue
            text = _pattern_text(node.args[0])
            if text is not None and text.endswith("$") and not _multiline(node):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("tail", ["\n", "\r\n", " ", "\n\n"])
def test_digest_grammars_refuse_trailing_whitespace(tail: str) -> None:
    text = f"sha256:{HEX}{tail}"
    assert not Digest.is_valid(text)
    assert layout.parse_link(text.encode()) is None
    assert layout.intended_digest(text.encode()) == f"sha256:{HEX}"
    with pytest.raises(InvalidDigestError):
        Digest.parse(text)


def test_request_path_names_refuse_a_trailing_newline() -> None:
    with pytest.raises(InvalidReferenceError):
        http._repo("team/app\n")
    with pytest.raises(InvalidReferenceError):
        http._ref("v1\n")
