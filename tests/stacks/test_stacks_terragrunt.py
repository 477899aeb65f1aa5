"""`stacks changed` follows what Terragrunt units read: includes (literal and through
`find_in_parent_folders`), `read_terragrunt_config`, `dependency` folders and evaluated
`terraform` sources. A real Terragrunt, when built into .tools/bin by scripts/peers.sh, is the
reference: every unit its `find --reading` lists as reading a file is changed when that file
changes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import commit, git, init_repo

from shipsure.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
TERRAGRUNT = ROOT / ".tools" / "bin" / "terragrunt"

TREE: dict[str, str | None] = {
    "root.hcl": (
        'locals {\n  account = read_terragrunt_config(find_in_parent_folders("account.hcl"))\n}\n'
    ),
    "live/account.hcl": 'locals { id = "1" }\n',
    "live/prod/env.hcl": 'locals { env = "prod" }\n',
    "live/dev/env.hcl": 'locals { env = "dev" }\n',
    "_envcommon/app.hcl": (
        "terraform {\n"
        '  source = "${get_repo_root()}/modules/app//sub"\n'
        "}\n"
        "locals {\n"
        '  env = read_terragrunt_config("${get_terragrunt_dir()}/../env.hcl")\n'
        '  shared = read_terragrunt_config("${get_parent_terragrunt_dir()}/shared.hcl")\n'
        # relative to the including unit's folder; the default when a unit has none
        '  unit = read_terragrunt_config("unit.hcl", { locals = {} })\n'
        "}\n"
    ),
    "_envcommon/shared.hcl": 'locals { tier = "web" }\n',
    "live/prod/app/unit.hcl": "locals { size = 2 }\n",
    "modules/app/sub/main.tf": 'variable "x" {}\n',
    "modules/app/lib/main.tf": 'output "y" { value = 1 }\n',
    "modules/db/main.tf": 'output "z" { value = 1 }\n',
    "live/prod/app/terragrunt.hcl": (
        'include "root" {\n  path = find_in_parent_folders("root.hcl")\n}\n'
        'include "envcommon" {\n'
        '  path = "${dirname(find_in_parent_folders("root.hcl"))}/_envcommon/app.hcl"\n'
        "}\n"
        'dependency "db" {\n  config_path = "../db"\n}\n'
    ),
    "live/dev/app/terragrunt.hcl": (
        'include "root" {\n  path = find_in_parent_folders("root.hcl")\n}\n'
        'include "envcommon" {\n  path = "../../../_envcommon/app.hcl"\n}\n'
    ),
    "live/prod/db/terragrunt.hcl": (
        'include "root" {\n  path = find_in_parent_folders("root.hcl")\n}\n'
        "locals {\n  modules = get_repo_root()\n}\n"
        'terraform {\n  source = "${local.modules}/modules/db"\n}\n'
    ),
    "live/prod/cdn/terragrunt.hcl": (
        "terraform {\n"
        '  source = "git::https://example.com/cdn.git//mod?ref=${local.v}"\n'
        "}\n"
        'locals {\n  v = "v1"\n}\n'
    ),
    ".shipsure/stacks.yaml": "parent_files: []\n",  # only what units really read
}


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "CI_PIPELINE_EVENT", "CI_PREV_COMMIT_SHA", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    init_repo(root)
    commit(root, TREE, "base")
    return root


def changed(repo: Path, capsys: pytest.CaptureFixture[str], base: str) -> dict[str, Any]:
    code = main(["stacks", "changed", "--repo", str(repo), "--format", "json", "--base", base])
    out = capsys.readouterr().out
    assert code == 0
    result: dict[str, Any] = json.loads(out)
    return result


def stacks(result: dict[str, Any]) -> dict[str, list[str]]:
    return {s["path"]: s["reasons"] for s in result["stacks"]}


def touch(repo: Path, path: str) -> str:
    base = git(repo, "rev-parse", "HEAD")
    text = (repo / path).read_text()
    commit(repo, {path: text + "# touched\n"})
    return base


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # the include every unit reaches through find_in_parent_folders("root.hcl")
        ("root.hcl", {"live/prod/app", "live/dev/app", "live/prod/db"}),
        # read by root.hcl, which is evaluated in each including unit
        ("live/account.hcl", {"live/prod/app", "live/dev/app", "live/prod/db"}),
        # an include built with dirname(find_in_parent_folders(...)), and a literal one
        ("_envcommon/app.hcl", {"live/prod/app", "live/dev/app"}),
        # get_parent_terragrunt_dir() is the included file's folder
        ("_envcommon/shared.hcl", {"live/prod/app", "live/dev/app"}),
        # get_terragrunt_dir() inside an include is the including unit's folder
        ("live/prod/env.hcl", {"live/prod/app"}),
        ("live/dev/env.hcl", {"live/dev/app"}),
        ("live/prod/app/unit.hcl", {"live/prod/app"}),
        # `${get_repo_root()}/modules/app//sub` copies all of modules/app
        ("modules/app/lib/main.tf", {"live/prod/app", "live/dev/app"}),
        # a source built from a static local; then prod/app through its dependency on db
        ("modules/db/main.tf", {"live/prod/db", "live/prod/app"}),
        ("live/prod/db/terragrunt.hcl", {"live/prod/db", "live/prod/app"}),
    ],
)
def test_a_change_to_a_file_a_unit_reads_changes_the_unit(
    path: str, expected: set[str], repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = touch(repo, path)
    result = changed(repo, capsys, base)
    assert set(stacks(result)) == expected
    assert result["warnings"] == []
    for reasons in stacks(result).values():
        assert reasons and all(path in r or "dependency" in r for r in reasons)


def test_reasons_say_how_the_file_is_read(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = changed(repo, capsys, touch(repo, "live/account.hcl"))
    assert stacks(result)["live/prod/db"] == [
        "reads live/account.hcl (read_terragrunt_config in root.hcl): live/account.hcl changed"
    ]
    result = changed(repo, capsys, touch(repo, "modules/db/main.tf"))
    assert stacks(result) == {
        "live/prod/db": ["terraform source modules/db: modules/db/main.tf changed"],
        "live/prod/app": ["dependency live/prod/db is changed"],
    }


@pytest.mark.parametrize(
    "unit",
    [
        'include "root" {\n  path = "${get_env("ROOT", "")}/root.hcl"\n}\n',
        'dependency "x" {\n  config_path = run_cmd("pick-dependency")\n}\n',
        "locals {\n  c = read_terragrunt_config(local.missing)\n}\n",
        'terraform {\n  source = "${get_env("MODULES")}/app"\n}\n',
        'include {\n  path = find_in_parent_folders("nowhere.hcl")\n}\n',
        "include {\n  path = \n",  # not HCL at all
    ],
)
def test_a_path_that_cannot_be_resolved_warns_and_counts_as_changed(
    unit: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit(repo, {"live/prod/odd/terragrunt.hcl": unit})
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"README.md": "unrelated\n"})
    result = changed(repo, capsys, base)
    assert list(stacks(result)) == ["live/prod/odd"]
    [reason] = stacks(result)["live/prod/odd"]
    assert reason.startswith("treated as changed: live/prod/odd/terragrunt.hcl")
    assert len(result["warnings"]) == 1
    assert "live/prod/odd is treated as changed" in result["warnings"][0]


def test_nothing_changed_means_no_unresolved_noise(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit(repo, {"live/prod/odd/terragrunt.hcl": 'include { path = get_env("X") }\n'})
    head = git(repo, "rev-parse", "HEAD")
    commit(repo, {}, "an empty commit: nothing changed, and the baseline is not HEAD")
    result = changed(repo, capsys, head)
    assert (result["stacks"], result["warnings"]) == ([], [])


def _terragrunt_reading(repo: Path) -> dict[str, set[str]]:
    """file -> units that read it, as Terragrunt's own `find --reading` says."""
    env = {
        **os.environ,
        "HOME": str(repo.parent / "home"),
        "TG_NO_TIPS": "true",
        "TG_LOG_DISABLE": "true",
    }
    proc = subprocess.run(
        [str(TERRAGRUNT), "find", "--json", "--reading", "--working-dir", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    out: dict[str, set[str]] = {}
    for unit in json.loads(proc.stdout):
        for path in unit.get("reading") or []:
            rel = (
                os.path.relpath(os.path.join(repo, path), repo)
                if not os.path.isabs(path)
                else (os.path.relpath(path, repo))
            )
            out.setdefault(rel, set()).add(unit["path"])
    return out


@pytest.mark.skipif(
    not TERRAGRUNT.is_file(), reason="terragrunt is not built (scripts/peers.sh builds it)"
)
def test_terragrunt_is_the_reference(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reading = _terragrunt_reading(repo)
    assert reading, "terragrunt listed no file read by any unit"
    for path, units in sorted(reading.items()):
        result = changed(repo, capsys, touch(repo, path))
        ours = stacks(result)
        assert units <= set(ours), f"{path}: terragrunt says {units} read it; we say {ours}"
        for extra in set(ours) - units:
            # A unit Terragrunt does not list reads it through a dependency that changed.
            assert all("dependency" in r for r in ours[extra]), (path, extra, ours[extra])
