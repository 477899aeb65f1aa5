"""`stacks changed` on repository shapes real infrastructure repositories have: modules
vendored as git submodules, stacks written in Terraform's JSON syntax (CDKTF output) or as
OpenTofu files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import GIT_ENV, commit, git, init_repo, module_call

from shipsure.cli.main import main


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI", "CI_PIPELINE_EVENT", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)


def changed(repo: Path, capsys: pytest.CaptureFixture[str], base: str) -> dict[str, Any]:
    code = main(["stacks", "changed", "--repo", str(repo), "--base", base, "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    result: dict[str, Any] = json.loads(out)
    return result


def paths(result: dict[str, Any]) -> list[str]:
    return [s["path"] for s in result["stacks"]]


def test_submodule_bump_changes_stacks_using_modules_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-modules"
    init_repo(shared)
    commit(shared, {"net/main.tf": 'output "id" { value = 1 }\n', "dns/env.hcl": "locals {}\n"})
    repo = tmp_path / "infra"
    init_repo(repo)
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    allow_file = ("-c", "protocol.file.allow=always")
    git(repo, *allow_file, "submodule", "add", "-q", str(shared), "vendor/mods")
    # Set to keep `git status` quiet; it also hides the bump from a plain `git diff`.
    git(repo, "config", "-f", ".gitmodules", "submodule.vendor/mods.ignore", "all")
    base = commit(
        repo,
        {
            "live/a/main.tf": module_call("net", "../../vendor/mods/net"),
            "live/b/terragrunt.hcl": 'terraform {\n  source = "../../vendor/mods//net"\n}\n',
            "live/c/terragrunt.hcl": (
                'locals {\n  env = read_terragrunt_config("../../vendor/mods/dns/env.hcl")\n}\n'
            ),
            "live/d/main.tf": 'output "d" { value = 1 }\n',
        },
    )
    commit(shared, {"net/main.tf": 'output "id" { value = 2 }\n'})
    git(repo / "vendor/mods", "pull", "-q", "origin", "main")
    commit(repo, {}, "bump shared modules")
    assert git(repo, "diff", "--name-only", base, "HEAD") == ""
    assert git(repo, "diff", "--name-only", "--ignore-submodules=none", base) == "vendor/mods"
    result = changed(repo, capsys, base)
    assert paths(result) == ["live/a", "live/b", "live/c"]
    assert result["stacks"][0]["reasons"] == ["module vendor/mods/net changed: vendor/mods changed"]


def test_json_and_opentofu_stacks_are_stacks_and_their_modules_are_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "infra"
    init_repo(repo)
    cdktf = {
        "module": {"net": {"source": "../../../modules/net"}},
        "output": {"o": {"value": "${module.net.id}"}},
    }
    listed = {"module": [{"dns": [{"source": "../../modules/dns"}]}]}
    base = commit(
        repo,
        {
            "modules/net/main.tf": 'output "id" { value = 1 }\n',
            "modules/dns/main.tofu": 'output "id" { value = 1 }\n',
            "cdktf.out/stacks/app/cdk.tf.json": json.dumps(cdktf),
            "live/dns/main.tf.json": json.dumps(listed),
            "live/tofu/main.tofu": module_call("dns", "../../modules/dns"),
            "live/plain/main.tofu.json": '{"output": {"x": {"value": 1}}}',
        },
    )
    commit(repo, {"modules/net/main.tf": 'output "id" { value = 2 }\n'})
    result = changed(repo, capsys, base)
    assert paths(result) == ["cdktf.out/stacks/app"]
    assert result["stacks"][0]["reasons"] == [
        "module modules/net changed: modules/net/main.tf changed"
    ]
    head = commit(repo, {"modules/dns/main.tofu": 'output "id" { value = 2 }\n'})
    assert paths(changed(repo, capsys, f"{head}^")) == ["live/dns", "live/tofu"]
    commit(repo, {"live/plain/main.tofu.json": '{"output": {"x": {"value": 2}}}'})
    assert paths(changed(repo, capsys, "HEAD^")) == ["live/plain"]
    # A JSON file that is not JSON: its sources are read leniently, with a warning.
    commit(repo, {"live/dns/main.tf.json": '{"module": {"dns": {"source": "../../modules/dns"}'})
    commit(repo, {"modules/dns/main.tofu": 'output "id" { value = 3 }\n'})
    code = main(["stacks", "changed", "--repo", str(repo), "--base", "HEAD^", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and "live/dns" in paths(json.loads(out))
    assert "live/dns/main.tf.json: could not parse as JSON" in err


def test_terragrunt_stack_files_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `terragrunt.stack.hcl` generates its units when run: none of them is a folder here,
    # so a change to it must not read as a quiet "0 stack(s) changed".
    repo = tmp_path / "infra"
    init_repo(repo)
    unit = 'unit "app" {\n  source = "../../units/app"\n  path   = "app"\n}\n'
    base = commit(
        repo,
        {
            "live/prod/terragrunt.stack.hcl": unit,
            "live/dev/db/main.tf": 'output "d" { value = 1 }\n',
        },
    )
    commit(repo, {"live/prod/terragrunt.stack.hcl": unit.replace("app", "api")})
    result = changed(repo, capsys, base)
    assert result["stacks"] == []
    assert result["warnings"] == [
        "Terragrunt stack files (live/prod/terragrunt.stack.hcl) are not understood: the units "
        "they generate are not listed, and changes to them or to the units they use are not "
        "detected"
    ]
    argv = ["stacks", "run", "plan", "--all", "--dry-run", "--repo", str(repo)]
    assert main(argv) == 0
    assert "Terragrunt stack files" in capsys.readouterr().err


def test_a_folder_named_in_watch_or_globals_covers_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `.gitignore` users write `config/app`, not `config/app/**`: that matched only a file
    # named exactly so, and a change below it was "0 stack(s) changed".
    repo = tmp_path / "infra"
    init_repo(repo)
    base = commit(
        repo,
        {
            ".shipsure/stacks.yaml": 'watch:\n  "live/*/app": ["config/app"]\nglobals: [ci]\n',
            "live/prod/app/main.tf": 'output "o" { value = 1 }\n',
            "live/prod/db/main.tf": 'output "o" { value = 1 }\n',
            "config/app/settings.json": "{}\n",
            "config/application.json": "{}\n",
            "ci/deploy.sh": "true\n",
        },
    )
    commit(repo, {"config/app/settings.json": '{"a": 1}\n', "config/application.json": "[]\n"})
    result = changed(repo, capsys, base)
    assert paths(result) == ["live/prod/app"]
    assert result["stacks"][0]["reasons"] == ["watched file config/app/settings.json changed"]
    head = commit(repo, {"ci/deploy.sh": "false\n"})
    assert changed(repo, capsys, f"{head}^")["all"] is True


def test_a_folder_named_in_exclude_excludes_the_folders_below_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A module repository's `examples/complete` and `test/fixtures/x` hold *.tf too.
    repo = tmp_path / "infra"
    init_repo(repo)
    commit(
        repo,
        {
            ".shipsure/stacks.yaml": "exclude: [examples, test/fixtures]\n",
            "live/a/main.tf": 'output "o" { value = 1 }\n',
            "examples/complete/main.tf": 'output "o" { value = 1 }\n',
            "test/fixtures/x/main.tf": 'output "o" { value = 1 }\n',
            "test/unit/main.tf": 'output "o" { value = 1 }\n',
        },
    )
    assert main(["stacks", "changed", "--all", "--repo", str(repo), "--format", "paths"]) == 0
    assert capsys.readouterr().out == "live/a\ntest/unit\n"
