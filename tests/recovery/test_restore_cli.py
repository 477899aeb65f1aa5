"""`shipsure restore` on bad input: one line naming the input, the documented exit code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["restore", *args])
    captured = capsys.readouterr()
    return code, captured.err


def test_needs_a_reference_or_a_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--from", "127.0.0.1:1")
    assert code == 2 and "name at least one REF" in err


def test_one_target_registry_per_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "a.example/x:1", "b.example/y:1", "--from", "c.example")
    assert code == 2 and "one target registry" in err


def test_report_problems_name_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, err = run(capsys, "--from-report", str(missing), "--registry", "r.example", "--from", "x")
    assert code == 2 and str(missing) in err and "\n" not in err.strip()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, err = run(capsys, "--from-report", str(bad), "--registry", "r.example", "--from", "x")
    assert code == 2 and "not a JSON report" in err
    bad.write_text('{"findings": 3}')
    code, err = run(capsys, "--from-report", str(bad), "--registry", "r.example", "--from", "x")
    assert code == 2 and "no findings list" in err
    bad.write_text('{"findings": []}')
    code, err = run(capsys, "--from-report", str(bad), "--from", "x")
    assert code == 2 and "--registry" in err
    bad.write_text("[" * 100_000 + "]" * 100_000)  # nested past the parser's recursion
    code, err = run(capsys, "--from-report", str(bad), "--registry", "r.example", "--from", "x")
    assert code == 2 and "not a JSON report" in err
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # never waited on
    for odd in (fifo, Path("/dev/zero")):
        code, err = run(capsys, "--from-report", str(odd), "--registry", "r.example", "--from", "x")
        assert code == 2 and "not a regular file" in err


def test_unreadable_source_could_not_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = run(capsys, "127.0.0.1:1/x:1", "--from", f"oci:{tmp_path / 'none'}")
    assert code == 3 and "not an OCI layout" in err


def test_unreachable_target_is_could_not_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    code = main(["restore", "127.0.0.1:1/x:1", "--from", f"oci:{layout}", "--timeout", "2"])
    out = capsys.readouterr().out
    assert code == 3
    assert "could not check" in out and "plan (" not in out


def test_all_wants_a_registry_or_repository(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--all", "r.example/team/app:1", "--from", "x.example")
    assert code == 2 and "not an image" in err


def test_all_over_a_repository_the_target_no_longer_lists_is_not_called_intact(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every tag of the repository is gone from the target (its tags list answers
    NAME_UNKNOWN): --all found nothing to check, which is exit 3 with the way out (name
    the tags), never "nothing to restore: every reference checked is intact" and exit 0."""
    images.push_image(registry.url, repo_name, None)  # in the catalog, without a tag
    for target in (f"{registry.host}/{repo_name}", f"{registry.host}/{repo_name}-never"):
        code = main(["restore", "--all", target, "--from", registry.host])
        out = capsys.readouterr().out
        assert code == 3, out
        assert "intact" not in out
        assert f"{target}: the target lists no tags" in out and "REPOSITORY:TAG" in out


def test_apply_to_a_read_only_registry_says_so(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """distribution in read-only mode answers every write 405 with `Allow: GET, HEAD` and a
    plain-text body: the failed step says what that means, not just "HTTP 405"."""
    images.push_image(registry.url, repo_name, "v1")
    with SandboxRegistry(readonly=True) as read_only:
        argv = ["restore", f"{read_only.host}/{repo_name}:v1", "--from", registry.host]
        code = main([*argv, "--apply", "--journal", str(read_only.workdir / "j.jsonl")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "HTTP 405 (the registry allows only GET, HEAD: is it in read-only mode?)" in out, out
