"""Dockerfiles are read as BuildKit's parser reads them (issue: heredocs, directives, BOM)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipsure.lint.dockerfile import image_uses

LintJson = Callable[..., tuple[int, dict[str, Any]]]


def _hits(text: str) -> list[tuple[str, int, int]]:
    return [(u.text, u.line, u.column) for u in image_uses(text, "Dockerfile")]


def test_heredoc_bodies_are_data() -> None:
    text = (
        "FROM python:3.12.4-slim\n"
        "COPY <<EOF /app/app.py\n"
        "from flask import Flask\n"
        "FROM alpine\n"
        "EOF\n"
        "RUN <<-SCRIPT bash\n"
        "\tFROM busybox\n"
        "\tSCRIPT\n"
        "COPY --from=nginx:1 <<EOT /etc/x\n"
        "from x\n"
        "EOT\n"
    )
    assert _hits(text) == [("python:3.12.4-slim", 1, 6), ("nginx:1", 9, 13)]


def test_escape_directive_and_continuations_with_comments() -> None:
    text = (
        "# escape=`\n"
        "FROM `\n"
        "  # a comment inside the continuation is dropped\n"
        "  golang:1.22 AS build\n"
        "RUN echo C:\\path\\\n"
        "FROM alpine:3.20.1\n"
    )
    assert _hits(text) == [("golang:1.22", 4, 3), ("alpine:3.20.1", 6, 6)]


def test_json_form_and_quoted_arg_defaults() -> None:
    text = 'ARG BASE="node:20"\nFROM ${BASE}\nCMD ["FROM", "evil"]\n'
    uses = image_uses(text, "Dockerfile")
    assert [(u.text, u.line, u.fix_line) for u in uses] == [("node:20", 2, 1)]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbfFROM alpine\n",  # a UTF-8 byte-order mark: Docker strips it
        b"FROM\talpine\n",  # any whitespace after the keyword
        b"from \t alpine\r\n",  # lower case keyword, CRLF
    ],
)
def test_bom_tab_and_crlf_still_report(raw: bytes, tmp_path: Path, lint_json: LintJson) -> None:
    (tmp_path / "Dockerfile").write_bytes(raw)
    code, data = lint_json(str(tmp_path))
    assert [(f["rule"], f["line"], f.get("column")) for f in data["findings"]] == [
        ("PIN001", 1, raw.decode("utf-8-sig").index("alpine") + 1)
    ]
    assert code == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("FROM alpine\nRUN <<EOF\n", "unterminated heredoc"),
        ("# escape=x\nFROM alpine\n", "invalid escape token"),
    ],
)
def test_a_file_buildkit_refuses_is_a_check_error(
    text: str, why: str, tmp_path: Path, lint_json: LintJson
) -> None:
    (tmp_path / "Dockerfile").write_text(text)
    code, data = lint_json(str(tmp_path))
    [only] = data["findings"]
    assert (only["kind"], only["line"], code) == ("check-error", 1, 3)
    assert why in only["message"]


def test_empty_and_comment_only_files_have_no_findings(tmp_path: Path, lint_json: LintJson) -> None:
    (tmp_path / "Dockerfile").write_text("# nothing yet\n\n")
    code, data = lint_json(str(tmp_path))
    assert (code, data["findings"]) == (0, [])
