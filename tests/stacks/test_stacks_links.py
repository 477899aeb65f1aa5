"""Symbolic links in a stacks repository: git reports a change only at the link's target."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import commit, git, init_repo

from shipsure.cli.main import main
from shipsure.stacks.links import resolve


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "CI_PIPELINE_EVENT", "CI_PREV_COMMIT_SHA", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)


def link(repo: Path, path: str, target: str) -> None:
    where = repo / path
    where.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, where)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    init_repo(root)
    commit(
        root,
        {
            "platform/variables.tf": 'variable "region" {}\n',
            "shared/providers.tf": 'provider "null" {}\n',
            "shared/modules/net/main.tf": 'output "id" { value = "net" }\n',
            "live/prod/a/main.tf": 'output "a" { value = 1 }\n',
            "live/prod/b/main.tf": 'output "b" { value = 1 }\n',
            "live/prod/c/main.tf": 'output "c" { value = 1 }\n',
            "live/prod/app/main.tf": 'output "app" { value = 1 }\n',
        },
    )
    link(root, "live/prod/a/variables.tf", "../../../platform/variables.tf")
    link(root, "live/prod/b/variables.tf", "../../../platform/variables.tf")
    link(root, "live/prod/a/providers.tf", "../../../shared/providers.tf")
    link(root, "live/prod/b/providers.tf", "../../../shared/providers.tf")
    link(root, "live/prod/c/net", "../../../shared/modules/net")  # a linked folder
    link(root, "live/staging/app", "../prod/app")  # a whole stack folder linked
    link(root, "live/prod/c/outside.tf", "/etc/hostname")
    commit(root, {}, "links")
    return root


def changed(repo: Path, capsys: pytest.CaptureFixture[str], base: str) -> dict[str, Any]:
    code = main(["stacks", "changed", "--repo", str(repo), "--format", "json", "--base", base])
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == 0
    return result


def listed(repo: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = main(["stacks", "changed", "--repo", str(repo), "--format", "json", "--all"])
    assert code == 0
    return [s["path"] for s in json.loads(capsys.readouterr().out)["stacks"]]


def test_a_changed_link_target_changes_every_stack_holding_the_link(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"platform/variables.tf": 'variable "region" { default = "eu" }\n'})
    result = changed(repo, capsys, base)
    stacks = {s["path"]: s["reasons"] for s in result["stacks"]}
    assert stacks == {
        "live/prod/a": [
            "file platform/variables.tf changed, linked here as live/prod/a/variables.tf"
        ],
        "live/prod/b": [
            "file platform/variables.tf changed, linked here as live/prod/b/variables.tf"
        ],
    }


def test_a_change_below_a_linked_folder_changes_the_stack(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"shared/modules/net/main.tf": 'output "id" { value = "net2" }\n'})
    stacks = [s["path"] for s in changed(repo, capsys, base)["stacks"]]
    assert stacks == ["live/prod/c"]


def test_a_linked_stack_folder_is_a_stack_and_changes_with_its_target(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"live/prod/app/main.tf": 'output "app" { value = 2 }\n'})
    stacks = [s["path"] for s in changed(repo, capsys, base)["stacks"]]
    assert stacks == ["live/prod/app", "live/staging/app"]


def test_a_folder_of_shared_linked_files_is_no_stack_unless_configured(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = listed(repo, capsys)
    assert "shared" not in found and "platform" not in found
    assert found == [
        "live/prod/a",
        "live/prod/app",
        "live/prod/b",
        "live/prod/c",
        "live/staging/app",
    ]
    commit(repo, {".shipsure/stacks.yaml": "include: [shared]\n"})
    assert "shared" in listed(repo, capsys)


def test_a_link_leaving_the_repository_is_a_warning(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"live/prod/a/main.tf": 'output "a" { value = 2 }\n'})
    warnings = changed(repo, capsys, base)["warnings"]
    assert warnings == [
        "link live/prod/c/outside.tf -> /etc/hostname leaves the repository; changes to it "
        "are not detected"
    ]


def test_links_of_links_are_followed() -> None:
    links = resolve({"a/x.tf": "../b/x.tf", "b/x.tf": "../c/x.tf", "d": "c"})
    assert sorted(links.aliases("c/x.tf")) == ["a/x.tf", "b/x.tf", "d/x.tf"]
    loop = resolve({"a": "b", "b": "a"})
    assert loop.aliases("a/f.tf") == ["b/f.tf"]  # bounded, no endless loop
