"""Every command on storage refuses a folder that is not a registry's rootdirectory (a
folder above or below it, say `.../docker`) with one line, exit 2: gc-check and gc said
"0 repositories, would delete 0" and exit 0 there, and gc-check asked for the registry
version first. An empty root is a registry nobody pushed to yet: clean (gc-check says that
2.x's collector stops there, as it does)."""

from __future__ import annotations

import json
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
    if command == "gc-check":
        # Not bad input; distribution 2.x's collector itself stops on an empty root ("Path
        # not found: /docker/registry/v2/repositories", exit 1), and gc-check says so.
        assert main([*argv, str(empty)]) == 1
        assert "gc-would-abort" in capsys.readouterr().out
    elif command != "gc-check, version unknown":
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
    err = capsys.readouterr().err
    assert err.startswith(f"shipsure: --from-dry-run {empty}: not a whole garbage-collect")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("given", "major"), [("2", 2), ("2.8", 2), ("2.8.2", 2), ("v3", 3), ("3.1.2", 3)]
)
def test_the_registry_version_is_taken_as_the_registry_writes_it(
    given: str, major: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--registry-version 2.8` (the version the docs and `registry --version` name) was an
    argparse error ("invalid int value"); the major version decides the prediction."""
    argv = ["gc-check", "--registry-version", given, "--format", "json", str(tmp_path)]
    assert main(argv) != 2  # 2.x's collector stops on this empty root: exit 1, not usage
    assert json.loads(capsys.readouterr().out)["gc"]["registry_version"] == major


@pytest.mark.parametrize("given", ["4", "1.0", "latest", "2.8.2.1"])
def test_a_version_that_is_not_2_or_3_is_a_usage_error(
    given: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gc-check", "--registry-version", given, str(tmp_path)])
    assert exit_info.value.code == 2
    assert "want distribution 2 or 3" in capsys.readouterr().err
