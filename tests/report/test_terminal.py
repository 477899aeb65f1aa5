"""Text output escapes control and bidi characters from names shipsure does not own (file
names, catalog names, registry messages): an ESC in a folder name recoloured the terminal
and a newline in a file name forged a line of `shipsure lint` output."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shipsure.cli.common import Progress
from shipsure.cli.main import main
from shipsure.findings import Finding, Report, Severity
from shipsure.report import probe_text, text_format
from shipsure.report.terminal import printable


def test_printable_escapes_controls_and_bidi_only() -> None:
    assert printable("a\x1b[31mb\nc\td\x7f\x9b") == "a\\x1b[31mb\\nc\\td\\x7f\\x9b"
    assert printable("x\u202ey\u2066") == "x\\u202ey\\u2066"
    assert printable("team/app:v1 é 日本") == "team/app:v1 é 日本"


def test_lint_text_escapes_file_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil\x1b[31m"
    evil.mkdir()
    (evil / "Dockerfile").write_text("FROM alpine\n")
    (tmp_path / "Dockerfile.a\nb").write_text("FROM alpine\n")
    assert main(["lint", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil\\x1b[31m/Dockerfile:1:6: warning PIN001" in out
    assert "Dockerfile.a\\nb:1:6: warning PIN001" in out
    assert len(out.splitlines()) == 3


def test_registry_text_escapes_names_and_messages() -> None:
    report = Report("probe")
    report.add(
        Finding(
            kind="blob-missing",
            severity=Severity.ERROR,
            message="gone \x1b]0;owned\x07",
            repository="team/\x1b[2Japp",
            path=("tag v1\nERROR fake",),
        )
    )
    report.meta["probe"] = {
        "registry": "r",
        "shard": "0/1",
        "unchecked": [{"repository": "x\x1b", "tags": 1, "reasons": ["503\x1b"]}],
    }
    for text in (text_format.render(report), probe_text.render(report)):
        assert "\x1b" not in text and "\x07" not in text
        assert not any(line.startswith("ERROR fake") for line in text.splitlines())
        assert "path: tag v1\\nERROR fake" in text


def test_error_line_escapes_the_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "/nonexistent/\x1b[31mx"]) == 2
    assert (
        capsys.readouterr().err == "shipsure: /nonexistent/\\x1b[31mx: no such file or directory\n"
    )


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_is_escaped_and_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    stream = _Tty()
    progress = Progress("lint", stream)
    progress.update("evil\x1b[2J/" + "x" * 100 + "/Dockerfile")
    written = stream.getvalue()
    assert written.startswith("\r") and written.endswith("\x1b[K")
    line = written[1 : -len("\x1b[K")]
    assert "\x1b" not in line
    assert line.startswith("lint: evil\\x1b[2J/")
    assert len(line) == 39


def test_progress_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress("probe", stream)
    progress.update("team/app")
    progress.done()
    assert stream.getvalue() == ""


def test_error_line_is_cut_to_a_readable_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 100 KB argument was echoed whole in its one-line error.
    assert main(["lint", "/nonexistent/" + "a" * 100_000]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shipsure: /nonexistent/aaa")
    assert "characters)…aaa" in err
    assert err.endswith(": File name too long\n")
    assert len(err) < 1100
