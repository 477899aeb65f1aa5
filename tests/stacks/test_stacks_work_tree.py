"""`stacks changed` on a work tree that differs from HEAD: edits not committed yet and new
files not added yet are changes (as in Terramate since v0.11), never a silent 0 changed;
what Terraform and shipsure write while running is not. Also clones that lack what the
baseline names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import commit, git, init_repo, make_tf_repo, module_call, write

from shipsure.cli.main import main

FILES: dict[str, str | None] = {
    ".gitignore": "ignored/\n",
    "modules/base/main.tf": 'output "x" { value = 1 }\n',
    "modules/net/main.tf": module_call("base", "../base"),
    "live/prod/my app/main.tf": module_call("net", "../../../modules/net"),
    "live/dev/db/main.tf": 'output "y" { value = 2 }\n',
}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "CI",
        "CI_PIPELINE_EVENT",
        "CI_PIPELINE_FILES",
        "CI_PREV_COMMIT_SHA",
        "GITHUB_ACTIONS",
        "GITHUB_EVENT_NAME",
        "GITHUB_EVENT_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "infra"
    init_repo(root)
    commit(root, FILES, "base")
    commit(root, {}, "nothing")  # so --base HEAD^ is not HEAD itself
    return root


def changed(repo: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    code = main(["stacks", "changed", "--repo", str(repo), "--base", "HEAD^", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0
    result: dict[str, Any] = json.loads(out)
    return result, err


def test_uncommitted_module_edit_changes_its_users(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, {"modules/base/main.tf": 'output "x" { value = 2 }\n'})
    result, err = changed(repo, capsys)
    assert [s["path"] for s in result["stacks"]] == ["live/prod/my app"]
    assert "1 uncommitted or untracked file(s) (modules/base/main.tf)" in err
    # Staged but not committed counts the same.
    git(repo, "add", "-A")
    result, _ = changed(repo, capsys)
    assert [s["path"] for s in result["stacks"]] == ["live/prod/my app"]


def test_new_stack_not_added_yet_and_stack_deleted_in_work_tree(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        repo,
        {
            "live/dev/new/main.tf": module_call("net", "../../../modules/net"),
            "live/prod/my app/main.tf": None,
            "ignored/x/main.tf": "locals {}\n",
        },
    )
    result, _ = changed(repo, capsys)
    assert [s["path"] for s in result["stacks"]] == ["live/dev/new"]
    assert [s["path"] for s in result["deleted"]] == ["live/prod/my app"]


def test_what_terraform_and_shipsure_write_is_no_change(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        repo,
        {
            "live/dev/db/.terraform/modules/modules.json": "{}\n",
            "live/dev/db/.terraform/providers/p/main.tf": "locals {}\n",
            "live/dev/db/.terragrunt-cache/abc/main.tf": "locals {}\n",
            "live/dev/db/terraform.tfstate": "{}\n",
            "live/dev/db/terraform.tfstate.backup": "{}\n",
            "live/dev/db/.terraform.lock.hcl": "# written by init\n",
            ".shipsure/logs/live__dev__db.log": "init\n",
            ".shipsure/locks/x.lock.json": "{}\n",
        },
    )
    result, err = changed(repo, capsys)
    assert result["stacks"] == [] and result["warnings"] == []
    assert err == ""
    # A settings file not committed yet is the repository's, though: every stack.
    write(repo, {".shipsure/stacks.yaml": "parallel: 2\n"})
    result, err = changed(repo, capsys)
    assert result["all"] is True and ".shipsure/stacks.yaml" in err
    write(repo, {".shipsure/stacks.yaml": None})
    # A lock file Terraform wrote once it is tracked is the repository's: a change to it is.
    git(repo, "add", "-f", "live/dev/db/.terraform.lock.hcl")
    commit(repo, {})
    commit(repo, {})
    write(repo, {"live/dev/db/.terraform.lock.hcl": "# upgraded\n"})
    result, _ = changed(repo, capsys)
    assert [s["path"] for s in result["stacks"]] == ["live/dev/db"]


def test_apply_of_a_dirty_work_tree_records_no_last_applied_commit(
    tmp_path: Path, plugin_cache: Path, terraform_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_tf_repo(tmp_path / "infra", ["s1"])
    write(repo, {"stacks/s1/extra.tf": 'output "extra" { value = 1 }\n'})
    argv = ["stacks", "run", "apply", "--all", "--repo", str(repo), "--binary", terraform_bin]
    argv += ["--plugin-cache", str(plugin_cache), "--format", "json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["last_applied_recorded"] is False
    assert "not recording" in err and "stacks/s1/extra.tf" in err
    assert not (repo / ".shipsure/state/last-applied").exists()
    commit(repo, {}, "extra output")
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["last_applied_recorded"] is True


def test_a_baseline_that_is_head_itself_is_warned_about(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--base main` run on main after the push: the merge base is HEAD, nothing can differ.
    commit(repo, {"live/dev/db/main.tf": 'output "y" { value = 3 }\n'})
    assert main(["stacks", "changed", "--repo", str(repo), "--base", "main"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("0 stack(s) changed")
    assert "is HEAD itself" in err and "--base HEAD^" in err
    # The last applied commit being HEAD means everything is applied: no warning.
    state = repo / ".shipsure/state"
    state.mkdir(parents=True)
    (state / "last-applied").write_text(git(repo, "rev-parse", "HEAD") + "\n")
    assert main(["stacks", "changed", "--repo", str(repo), "--since-last-apply"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("0 stack(s) changed") and err == ""


def test_a_repository_without_commits_lists_its_stacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "new"
    init_repo(root)
    write(root, {"live/a/main.tf": "locals {}\n", "live/b/main.tf": "locals {}\n"})
    git(root, "add", "live/a")
    assert main(["stacks", "changed", "--repo", str(root), "--format", "paths"]) == 0
    assert capsys.readouterr().out == "live/a\nlive/b\n"


def test_a_lock_file_init_rewrites_does_not_make_the_apply_dirty(
    tmp_path: Path, plugin_cache: Path, terraform_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `terraform init` adds the hashes of this platform to a tracked .terraform.lock.hcl:
    # the work tree was clean when the run chose what to apply, so HEAD is what was applied.
    repo = make_tf_repo(tmp_path / "infra", ["s1"])
    (repo / "stacks/s1/.terraform.lock.hcl").write_text("# locked\n")
    git(repo, "add", "-f", "stacks/s1/.terraform.lock.hcl")
    commit(repo, {}, "lock file")
    wrapper = tmp_path / "terraform"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = init ]; then echo "# hashes for this platform" >> .terraform.lock.hcl; fi\n'
        f'exec "{terraform_bin}" "$@"\n'
    )
    wrapper.chmod(0o755)
    argv = ["stacks", "run", "apply", "--all", "--repo", str(repo), "--binary", str(wrapper)]
    assert main([*argv, "--plugin-cache", str(plugin_cache), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["last_applied_recorded"] is True
    assert git(repo, "status", "--porcelain") == "M stacks/s1/.terraform.lock.hcl"


def test_woodpecker_pull_request_without_its_target_branch_uses_the_listed_files(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Woodpecker clones a pull request's ref only: origin/main is not there.
    monkeypatch.setenv("CI", "woodpecker")
    monkeypatch.setenv("CI_PIPELINE_EVENT", "pull_request")
    monkeypatch.setenv("CI_COMMIT_TARGET_BRANCH", "release-9")
    monkeypatch.setenv("CI_PIPELINE_FILES", '["live/dev/db/main.tf"]')
    code = main(["stacks", "changed", "--repo", str(repo), "--format", "json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["path"] for s in result["stacks"]] == ["live/dev/db"]
    assert result["baseline"]["description"] == (
        "CI_COMMIT_TARGET_BRANCH release-9 is not in this clone; CI_PIPELINE_FILES (1 files)"
    )
    monkeypatch.delenv("CI_PIPELINE_FILES")  # not passed: every stack, never a guess
    assert main(["stacks", "changed", "--repo", str(repo), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"] is True


def test_a_repository_git_refuses_is_not_called_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Git refuses a repository owned by another user (safe.directory) or in a format it
    # does not know; "not inside a git repository" sent people looking for the wrong fix.
    root = tmp_path / "infra"
    init_repo(root)
    git(root, "config", "core.repositoryformatversion", "99")
    assert main(["stacks", "changed", "--repo", str(root)]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"shipsure: {root}: git cannot read the repository: fatal: ")
    assert "version" in err and err.count("\n") == 1


def test_woodpecker_empty_file_list_is_no_proof_of_no_change(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Woodpecker sets CI_PIPELINE_FILES=[] for a tag pipeline (it lists files for pushes
    # and pull requests only); with the previous commit outside a shallow clone that was
    # "0 stack(s) changed" for a release.
    monkeypatch.setenv("CI", "woodpecker")
    monkeypatch.setenv("CI_PIPELINE_EVENT", "tag")
    monkeypatch.setenv("CI_PREV_COMMIT_SHA", "f" * 40)
    monkeypatch.setenv("CI_PIPELINE_FILES", "[]")
    assert main(["stacks", "changed", "--repo", str(repo), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["all"] is True and len(result["stacks"]) == 2
    assert "CI_PIPELINE_FILES is []" in result["baseline"]["all_reason"]


@pytest.mark.parametrize("name", ["last-applied", "drift.json"])
def test_a_state_file_that_is_a_fifo_is_refused_not_waited_on(
    name: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = repo / ".shipsure/state"
    state.mkdir(parents=True)
    os.mkfifo(state / name)
    argv = ["stacks", "changed", "--since-last-apply", "--repo", str(repo)]
    if name == "drift.json":
        argv = ["stacks", "drift", "--repo", str(repo), "--binary", "/nonexistent/terraform"]
    assert main(argv) == 3
    assert capsys.readouterr().err == (
        f"shipsure: {state / name}: cannot read: not a regular file\n"
    )


def test_a_github_event_file_that_is_a_fifo_means_all_stacks(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "event.json")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(tmp_path / "event.json"))
    assert main(["stacks", "changed", "--repo", str(repo), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"] is True


def test_a_fifo_at_a_stack_log_fails_that_stack_only(
    tmp_path: Path, plugin_cache: Path, terraform_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_tf_repo(tmp_path / "infra", ["s1", "s2"])
    logs = repo / ".shipsure/logs"
    logs.mkdir(parents=True)
    os.mkfifo(logs / "stacks__s1.log")  # opening it to write waited for a reader forever
    argv = ["stacks", "run", "plan", "--all", "--repo", str(repo), "--binary", terraform_bin]
    assert main([*argv, "--plugin-cache", str(plugin_cache), "--format", "json"]) == 1
    results = {s["path"]: s for s in json.loads(capsys.readouterr().out)["stacks"]}
    assert results["stacks/s1"]["result"] == "failed"
    assert results["stacks/s1"]["detail"].startswith("cannot write log ")
    assert results["stacks/s2"]["result"] == "changes"
