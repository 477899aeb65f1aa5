"""Stacks named after options: `stacks run plan --parallel 2 stacks/s1` and
`stacks drift --format json stacks/s1` were refused ("unrecognized arguments") because
argparse fills `STACK...` at the action word; unknown options are still refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from stack_helpers import make_tf_repo

from shipsure.cli.main import main


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_tf_repo(tmp_path / "infra", ["s1", "s2", "s3"])


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--dry-run", "--parallel", "2", "stacks/s1", "stacks/s3"],
        ["plan", "stacks/s1", "--dry-run", "stacks/s3"],
        ["apply", "--dry-run", "stacks/s1", "--parallel", "2", "stacks/s3"],
    ],
)
def test_run_takes_stacks_anywhere(
    argv: list[str], repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stacks", "run", *argv, "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "on 2 stack(s)" in out
    assert out.index("stacks/s1: init") < out.index("stacks/s3: init")
    assert "stacks/s2" not in out


def test_unknown_option_is_still_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["stacks", "run", "plan", "--dry-run", "--bogus", "stacks/s1", "--repo", str(repo)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.endswith("unrecognized arguments: --bogus\n")


def test_drift_takes_stacks_after_options(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A stack that is not one is refused by name: the word reached the stack list.
    code = main(["stacks", "drift", "--format", "json", "modules/greet", "--repo", str(repo)])
    assert code == 2
    assert "modules/greet" in capsys.readouterr().err


def test_settings_nested_too_deep_are_a_usage_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / ".shipsure").mkdir(exist_ok=True)
    (repo / ".shipsure" / "stacks.yaml").write_text("watch: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["stacks", "changed", "--all", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.endswith("stacks.yaml: not valid YAML: nested too deeply to read\n")


@pytest.mark.parametrize("ttl", ["0", "9.5"])
def test_a_lock_ttl_too_short_to_hold_is_refused(
    ttl: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # TTL 0 renewed in a busy loop and was stale as soon as written: no lock at all.
    with pytest.raises(SystemExit) as exited:
        main(["stacks", "run", "plan", "--all", "--lock-ttl", ttl, "--repo", str(repo)])
    assert exited.value.code == 2
    assert f"expected at least 10 seconds, not '{ttl}'" in capsys.readouterr().err


def test_a_repo_path_too_long_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Path.exists() raised ENAMETOOLONG: a traceback.
    long = str(tmp_path / ("a" * 5000))
    assert main(["stacks", "changed", "--all", "--repo", long]) == 2
    assert "File name too long" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "what"), [("--log-dir", "log folder"), ("--plugin-cache", "plugin cache")]
)
@pytest.mark.parametrize("command", [["run", "plan", "stacks/s1"], ["drift"]])
def test_a_folder_that_cannot_be_made_is_one_line_naming_it(
    option: str,
    what: str,
    command: list[str],
    repo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A log folder under a file was a traceback; a plugin cache there was blamed on the
    # stack's log ("cannot write log ...").
    (tmp_path / "a-file").write_text("")
    bad = tmp_path / "a-file" / "sub"
    assert main(["stacks", *command, "--repo", str(repo), option, str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"shipsure: {what} {bad}: cannot create it: Not a directory\n"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1", "not a valid URL"),
        ("https://hooks.example.invalid:99999999/x", "not a valid URL"),
        ("hooks.slack.com/services/T000/B000/SECRET", "expected an http:// or https:// URL"),
        ("ftp://hooks.example.invalid/SECRET", "expected an http:// or https:// URL"),
    ],
)
def test_a_webhook_no_post_can_reach_is_refused_before_planning(
    url: str,
    why: str,
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was taken, every stack planned, and then a traceback (http://[::1) or an alert
    # "not delivered" at the first transition, maybe months later.
    argv = ["stacks", "drift", "--repo", str(repo), "--binary", "/nonexistent/terraform"]
    assert main([*argv, "--webhook", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"shipsure: --webhook: {why}") and "SECRET" not in err
    monkeypatch.setenv("SHIPSURE_DRIFT_WEBHOOK", url)
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"shipsure: SHIPSURE_DRIFT_WEBHOOK: {why}")
