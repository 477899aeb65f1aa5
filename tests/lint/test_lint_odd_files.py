"""`shipsure lint` on files that are not plain text files: FIFOs, devices, link loops,
dangling links. Each is a one-line error or a check-error naming the file; none hangs
(a FIFO named `compose.yml` used to block the directory walk forever)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipsure.cli.main import main


def _lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["lint", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_fifo_in_a_walked_folder_is_a_check_error_not_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(tmp_path / "compose.yml")
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20.3\n")
    code, out, _ = _lint(capsys, "--format", "json", str(tmp_path))
    doc = json.loads(out)
    errors = [f for f in doc["findings"] if f["kind"] == "check-error"]
    assert code == 3
    assert len(errors) == 1
    assert errors[0]["message"] == "could not check: not a regular file"
    assert errors[0]["path"].endswith("compose.yml")


def test_link_to_a_device_is_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").symlink_to("/dev/zero")
    code, out, _ = _lint(capsys, str(tmp_path))
    assert code == 3
    assert "Dockerfile:1: error check-error could not check: not a regular file" in out


@pytest.mark.parametrize("kind", ["fifo", "loop", "dangling"])
def test_named_path_that_is_no_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pod.yaml"
    if kind == "fifo":
        os.mkfifo(path)
        want = "not a regular file or directory"
    elif kind == "loop":
        (tmp_path / "other.yaml").symlink_to(path)
        path.symlink_to(tmp_path / "other.yaml")
        want = "a symbolic link to nothing (or a loop of links)"
    else:
        path.symlink_to(tmp_path / "gone.yaml")
        want = "a symbolic link to nothing (or a loop of links)"
    code, out, err = _lint(capsys, str(path))
    assert code == 2
    assert out == ""
    assert err == f"shipsure: {path}: {want}\n"


def test_config_that_is_a_fifo_is_refused_not_waited_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20.3\n")
    fifo = tmp_path / "lint.yaml"
    os.mkfifo(fifo)
    code, out, err = _lint(capsys, "--config", str(fifo), str(tmp_path))
    assert (code, out) == (2, "")
    assert err == f"shipsure: {fifo}: cannot read: not a regular file\n"


@pytest.mark.parametrize("name", ["pod.yaml", ".woodpecker.yaml", "compose.yml"])
def test_yaml_nested_too_deep_is_a_check_error(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # PyYAML recurses per level: this ended in RecursionError and a traceback.
    (tmp_path / name).write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = _lint(capsys, str(tmp_path))
    assert err == ""
    if name == "pod.yaml":
        # Any other YAML that does not parse is not ours to judge (Helm templates): skipped.
        assert code == 0
        assert out.endswith("; checked 1 skipped\n")
    else:
        # Woodpecker: WP001 (the file cannot be read as a pipeline); compose: check-error.
        assert code == (1 if name.startswith(".woodpecker") else 3)
        assert "nested too deeply to read" in out


def test_a_path_too_long_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Path.is_dir() raised ENAMETOOLONG: a traceback.
    code, out, err = _lint(capsys, str(tmp_path / ("a" * 5000)))
    assert (code, out) == (2, "")
    assert err.startswith("shipsure: ") and "File name too long" in err
    assert len(err) < 1100  # the echoed name is cut


def test_fix_of_a_reference_no_request_can_reach_is_not_fixed_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 99999: no URL can hold it. It once parsed as a reference and ended `lint --fix`
    # in a traceback; the reference grammar now refuses it, so it is reported as a
    # reference that is not one (PIN005) and --fix plans nothing for it.
    (tmp_path / "Dockerfile").write_text("FROM 127.0.0.1:99999/team/app:3\n")
    code, out, err = _lint(capsys, "--fix", str(tmp_path))
    assert code == 0
    assert "0 change(s)" in out
    assert "Traceback" not in err
    code, out, err = _lint(capsys, str(tmp_path))
    assert "PIN005" in out and "bad registry host '127.0.0.1:99999'" in out
    assert "Traceback" not in err
