"""`shipsure probe --repo GLOB` that matches no repository of the catalog (a typo, or a
team that has not pushed yet) is said, never a silent clean run of nothing."""

from __future__ import annotations

import json

import pytest

from shipsure.cli.main import main
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, generate


@pytest.mark.slow
def test_repo_glob_matching_nothing_is_warned(
    fresh_registry: SandboxRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = generate(
        fresh_registry.root, SyntheticSpec(repositories=2, tags=1, platforms=1, layers=1)
    )
    team = tree.repositories[0].split("/")[0]
    host = fresh_registry.host
    assert main(["probe", "--repo", "tem/*", "--repo", f"{team}/*", host]) == 0
    out, err = capsys.readouterr()
    assert "  warning: --repo 'tem/*' matched no repository in the catalog\n" in out
    assert f"--repo '{team}/*'" not in out
    assert err == ""

    # A shard that owns none of the matches is no warning: the glob matched the catalog.
    for index in range(4):
        shard = ["--shard", f"{index}/4"]
        assert main(["probe", "--format", "json", *shard, "--repo", "*", host]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["probe"]["repository_globs_unmatched"] == []
        assert err == ""

    assert main(["probe", "--format", "json", "--repo", "[", host]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["probe"]["repository_globs_unmatched"] == ["["]
    assert err == "shipsure: warning: --repo '[' matched no repository\n"


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app:1.0", "https://reg.example/team/app"],
)
def test_probe_of_a_repository_says_how_to_ask_for_one(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--repo 'team/app'" in err, err


def test_probe_of_user_info_with_a_slash_never_echoes_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["probe", "ci:pa/ss@127.0.0.1:5000/team/app"]) == 2
    assert "pa/ss" not in "".join(capsys.readouterr())
