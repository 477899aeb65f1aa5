"""`shipsure stacks changed` on generated git repositories (real git)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import commit, git, init_repo, module_call

from shipsure.cli.main import main

CI_VARIABLES = (
    "CI",
    "CI_PIPELINE_EVENT",
    "CI_PREV_COMMIT_SHA",
    "CI_PIPELINE_FILES",
    "CI_COMMIT_TARGET_BRANCH",
    "GITHUB_ACTIONS",
    "GITHUB_EVENT_NAME",
    "GITHUB_EVENT_PATH",
    "GITHUB_BASE_REF",
)

BASE_FILES: dict[str, str | None] = {
    "terragrunt.hcl": "remote_state {}\n",
    "README.md": "infrastructure\n",
    "modules/net/main.tf": 'output "id" { value = "net" }\n',
    "modules/app/main.tf": module_call("net", "../net"),
    "modules/loop-a/main.tf": module_call("b", "../loop-b"),
    "modules/loop-b/main.tf": module_call("a", "../loop-a"),
    "modules/unused/main.tf": 'output "x" { value = 1 }\n',
    "stacks/a/main.tf": module_call("app", "../../modules/app"),
    "stacks/b/main.tf": module_call("net", "../../modules/net"),
    "stacks/c/main.tf": module_call("vpc", "git::https://example.com/vpc.git?ref=v1")
    + '# module "old" { source = "../../modules/unused" }\n',
    "stacks/d/terragrunt.hcl": 'terraform {\n  source = "../../modules//app"\n}\n',
    "stacks/e/main.tf": module_call("loop", "../../modules/loop-a"),
    "stacks/f/main.tf": 'output "f" { value = 1 }\n',
    "config/f.json": "{}\n",
    "live/prod/env.hcl": "locals {}\n",
    "live/prod/x/terragrunt.hcl": "include { path = find_in_parent_folders() }\n",
    "live/dev/y/main.tf": 'output "y" { value = 1 }\n',
    ".shipsure/stacks.yaml": 'watch:\n  "stacks/f": ["config/f.json"]\n',
}
ALL = ["live/dev/y", "live/prod/x", "stacks/a", "stacks/b", "stacks/c", "stacks/d", "stacks/e",
       "stacks/f"]  # fmt: skip


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "infra"
    init_repo(root)
    commit(root, BASE_FILES, "base")
    return root


def changed(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code = main(["stacks", "changed", "--repo", str(repo), "--format", "json", *extra])
    out = capsys.readouterr().out
    assert code == 0
    result: dict[str, Any] = json.loads(out)
    return result


def paths(result: dict[str, Any]) -> list[str]:
    return [s["path"] for s in result["stacks"]]


def reasons(result: dict[str, Any], stack: str) -> list[str]:
    return next(s["reasons"] for s in result["stacks"] if s["path"] == stack)


def test_module_change_reaches_stacks_through_modules(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"modules/net/main.tf": 'output "id" { value = "net2" }\n'})
    result = changed(repo, capsys, "--base", base)
    # a uses app uses net; d is terragrunt sourcing modules//app; c only has a comment.
    assert paths(result) == ["stacks/a", "stacks/b", "stacks/d"]
    assert result["all"] is False
    assert reasons(result, "stacks/a") == [
        "module modules/app changed: modules/app uses modules/net; modules/net/main.tf changed"
    ]
    assert reasons(result, "stacks/b") == [
        "module modules/net changed: modules/net/main.tf changed"
    ]


def test_module_cycle_is_followed_once(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"modules/loop-b/variables.tf": 'variable "v" {}\n'})
    assert paths(changed(repo, capsys, "--base", base)) == ["stacks/e"]


def test_unused_module_and_commented_source_change_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"modules/unused/main.tf": 'output "x" { value = 2 }\n', "README.md": "x\n"})
    result = changed(repo, capsys, "--base", base)
    assert result["stacks"] == []
    assert result["all"] is False


def test_every_commit_of_a_multi_commit_push_counts(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/b/extra.tf": "locals {}\n"}, "first")
    commit(repo, {"stacks/c/extra.tf": "locals {}\n"}, "second")
    result = changed(repo, capsys, "--base", base)
    assert paths(result) == ["stacks/b", "stacks/c"]
    assert reasons(result, "stacks/c") == ["file stacks/c/extra.tf changed"]


def test_global_file_means_all_stacks(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"terragrunt.hcl": 'remote_state { backend = "s3" }\n'})
    result = changed(repo, capsys, "--base", base)
    assert result["all"] is True
    assert paths(result) == ALL
    assert reasons(result, "stacks/f") == ["global file terragrunt.hcl changed"]


def test_watch_and_parent_files(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"config/f.json": '{"a": 1}\n', "live/prod/env.hcl": "locals { a = 1 }\n"})
    result = changed(repo, capsys, "--base", base)
    assert paths(result) == ["live/prod/x", "stacks/f"]
    assert reasons(result, "stacks/f") == ["watched file config/f.json changed"]
    assert reasons(result, "live/prod/x") == ["parent file live/prod/env.hcl changed"]


def test_deleted_stack_is_reported(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/c/main.tf": None})
    result = changed(repo, capsys, "--base", base)
    assert result["stacks"] == []
    assert [d["path"] for d in result["deleted"]] == ["stacks/c"]
    main(["stacks", "changed", "--repo", str(repo), "--base", base])
    assert "stacks/c (deleted)" in capsys.readouterr().out


def test_source_outside_repository_is_warned_about(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/b/outside.tf": module_call("x", "../../../elsewhere")})
    result = changed(repo, capsys, "--base", base)
    assert paths(result) == ["stacks/b"]
    assert any("outside the repository" in w for w in result["warnings"])


def test_unparsable_file_falls_back_with_warning(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(
        repo,
        {
            "modules/net/main.tf": "# touched\n",
            "stacks/f/broken.tf": 'module "n" {\n  source = "../../modules/net"\n',
        },
    )
    code = main(["stacks", "changed", "--repo", str(repo), "--base", base, "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0
    assert "could not parse as HCL" in captured.err
    result = json.loads(captured.out)
    assert "stacks/f" in paths(result)
    assert "module modules/net changed: modules/net/main.tf changed" in reasons(result, "stacks/f")
    assert any("could not parse as HCL" in w for w in result["warnings"])


def test_last_applied_baseline(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    applied = git(repo, "rev-parse", "HEAD")
    (repo / ".shipsure/state").mkdir(parents=True)
    (repo / ".shipsure/state/last-applied").write_text(applied + "\n")
    commit(repo, {"stacks/b/x.tf": "locals {}\n"})
    result = changed(repo, capsys, "--since-last-apply")
    assert paths(result) == ["stacks/b"]
    assert result["baseline"]["commit"] == applied
    # Outside CI without --base, the recorded apply is the default baseline too.
    assert paths(changed(repo, capsys)) == ["stacks/b"]


def test_no_baseline_outside_ci_means_all(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = changed(repo, capsys)
    assert result["all"] is True
    assert "no baseline" in result["baseline"]["all_reason"]


def test_woodpecker_variables(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prev = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/a/x.tf": "locals {}\n"})
    monkeypatch.setenv("CI", "woodpecker")
    monkeypatch.setenv("CI_PIPELINE_EVENT", "push")
    monkeypatch.setenv("CI_PREV_COMMIT_SHA", prev)
    assert paths(changed(repo, capsys)) == ["stacks/a"]

    monkeypatch.setenv("CI_PREV_COMMIT_SHA", "f" * 40)  # not in this clone
    monkeypatch.setenv("CI_PIPELINE_FILES", '["stacks/b/main.tf"]')
    assert paths(changed(repo, capsys)) == ["stacks/b"]

    monkeypatch.delenv("CI_PIPELINE_FILES")  # Woodpecker: undefined above 500 files
    result = changed(repo, capsys)
    assert result["all"] is True
    assert "CI_PIPELINE_FILES undefined" in result["stacks"][0]["reasons"][0]

    for event in ("manual", "cron"):
        monkeypatch.setenv("CI_PIPELINE_EVENT", event)
        assert changed(repo, capsys)["all"] is True


def test_github_push_event(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/e/x.tf": "locals {}\n"})
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": before}))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    assert paths(changed(repo, capsys)) == ["stacks/e"]
    monkeypatch.setenv("GITHUB_EVENT_NAME", "schedule")
    assert changed(repo, capsys)["all"] is True


def test_shallow_clone_missing_base_takes_all(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/a/x.tf": "locals {}\n"})
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)],
        check=True,
        timeout=60,
    )
    result = changed(clone, capsys, "--base", base)
    assert result["all"] is True
    assert "shallow clone" in result["baseline"]["all_reason"]


def test_bad_inputs_exit_2_with_one_line(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["stacks", "changed", "--repo", str(repo), "--base", "no-such-ref"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base no-such-ref" in err
    (tmp_path / "plain").mkdir()
    assert main(["stacks", "changed", "--repo", str(tmp_path / "plain")]) == 2
    assert "not inside a git repository" in capsys.readouterr().err
    (repo / ".shipsure/stacks.yaml").write_text("markers: [1, 2]\n")
    assert main(["stacks", "changed", "--repo", str(repo), "--all"]) == 2
    assert "markers must be a list" in capsys.readouterr().err


def test_text_and_paths_formats(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"stacks/b/x.tf": "locals {}\n"})
    assert (
        main(["stacks", "changed", "--repo", str(repo), "--base", base, "--format", "paths"]) == 0
    )
    assert capsys.readouterr().out == "stacks/b\n"
    assert main(["stacks", "changed", "--repo", str(repo), "--base", base]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stacks/b\n  - file stacks/b/x.tf changed\n")
