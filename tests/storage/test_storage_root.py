"""Every command that reads storage refuses a root that is not a registry's rootdirectory
(a file, a folder one level too high or too low) with a one-line error naming the folder to
pass, exit 2: read as a registry, such a root holds no repositories, and "clean" would be a
silent wrong answer. Odd but right roots (relative, spaces, non-ASCII) just work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.sandbox.synthetic import SyntheticSpec, generate

COMMANDS = {
    "scan": ["scan", "--recheck-delay=0"],
    "gc-check": ["gc-check", "--registry-version", "2"],
    "gc": ["gc"],
    "retain": ["retain", "--policy", "{policy}", "--on-storage"],
}


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `my räg root/`, a small registry's rootdirectory."""
    base = tmp_path_factory.mktemp("holder")
    generate(base / "my räg root", SyntheticSpec(repositories=2, tags=1, platforms=1, layers=1))
    (base / "policy.yaml").write_text('policies:\n  - repositories: "*"\n    keep: {newest: 5}\n')
    (base / "a-file").write_text("not a folder")
    return base


def _run(holder: Path, command: str, root: str) -> int:
    argv = [a.replace("{policy}", str(holder / "policy.yaml")) for a in COMMANDS[command]]
    return main([*argv, root])


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "given",
    ["", "my räg root/docker", "my räg root/docker/registry/v2", "my räg root/docker/registry"],
    ids=["one-level-up", "docker", "v2", "registry"],
)
def test_a_root_off_by_some_levels_is_refused_naming_the_right_one(
    holder: Path, command: str, given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(holder, command, str(holder / given)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"which looks like {holder / 'my räg root'}" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_file_for_the_root_is_bad_input(
    holder: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(holder, command, str(holder / "a-file")) == 2
    assert "a-file: not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_relative_root_with_spaces_and_non_ascii_works(
    holder: Path,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(holder / "my räg root", tmp_path / "my räg root")
    monkeypatch.chdir(tmp_path)
    assert _run(holder, command, "my räg root") == 0, capsys.readouterr()
    assert os.listdir(tmp_path / "my räg root")  # nothing was collected away
