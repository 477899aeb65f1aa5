"""Every command on storage refuses a folder that is not a registry's rootdirectory (a
folder above or below it, say `.../docker`) with one line, exit 2: gc-check and gc said
"0 repositories, would delete 0" and exit 0 there, and gc-check asked for the registry
version first. An empty root is a registry nobody pushed to yet: clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipsure.cli.main import main

COMMANDS = {
    "gc-check": ["gc-check", "--registry-version", "2"],
    "gc-check, version unknown": ["gc-check"],
    "gc": ["gc"],
    "scan": ["scan"],
    "retain": ["retain", "--policy", "{policy}", "--on-storage"],
}


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("policies:\n  - keep: {newest: 1}\n")
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_a_folder_that_is_not_a_storage_root_is_bad_input(
    command: str, policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    (root / "docker/registry/v2/repositories/team/app/_manifests/tags").mkdir(parents=True)
    argv = [a.format(policy=policy) for a in COMMANDS[command]]
    for wrong in (root / "docker", tmp_path):
        assert main([*argv, str(wrong)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no docker/registry/v2 inside" in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    if command != "gc-check, version unknown":
        assert main([*argv, str(empty)]) == 0, capsys.readouterr().err


def test_an_empty_dry_run_output_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every real `garbage-collect --dry-run` prints its summary or its error (an empty
    registry too: "failed to mark: ... Path not found"); an empty file is a redirect that
    caught nothing, not "0 problems" (it was exit 0)."""
    empty = tmp_path / "dry-run.txt"
    empty.write_text("")
    assert main(["gc-check", "--from-dry-run", str(empty)]) == 2
    assert capsys.readouterr().err == f"shipsure: --from-dry-run {empty}: empty\n"
