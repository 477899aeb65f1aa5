"""WP001-WP010: each rule with a failing and a passing pipeline shaped like real ones."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

LintTree = Callable[..., list[tuple[str, str, int]]]

SECRETS = """
    secrets:
      vault_token: {events: [push]}
      registry_password: [push, tag, manual]
"""


def wp(hits: list[tuple[str, str, int]], rule: str | None = None) -> list[tuple[str, str, int]]:
    """Only the Woodpecker findings (or those of one rule)."""
    return [h for h in hits if h[0].startswith("WP") and (rule is None or h[0] == rule)]


# --- WP001 -----------------------------------------------------------------------------


def test_wp001_schema_failures(lint_tree: LintTree) -> None:
    files = {
        # Woodpecker 0.15 syntax: `pipeline:` is gone, and `secrets:` on a step is refused.
        ".woodpecker/old.yaml": """
            when:
              - event: push
            pipeline:
              build:
                image: golang:1.22.1
                commands: [go build]
        """,
        ".woodpecker/typo.yaml": """
            when:
              - event: pushh
            steps:
              build:
                image: golang:1.22.1
                commands: [go build]
        """,
        ".woodpecker/broken.yaml": """
            when:
              - event: push
            steps:
              build:
                image: golang:1.22.1
                commands: [go build
        """,
    }
    hits = wp(lint_tree(files), "WP001")
    assert (".woodpecker/typo.yaml", 2) in [(p, line) for _, p, line in hits]
    assert ".woodpecker/old.yaml" in {p for _, p, _ in hits}
    broken = [line for _, p, line in hits if p == ".woodpecker/broken.yaml"]
    assert broken and broken[0] >= 6  # the YAML error's line, not 1


def test_wp001_valid_file_passes(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            when:
              - event: [push, pull_request]
                branch: main
            variables:
              - &go_image golang:1.22.1
            steps:
              - name: test
                image: *go_image
                commands:
                  - go test ./...
              - name: publish
                image: woodpeckerci/plugin-docker-buildx:5.0.0
                settings:
                  repo: registry.example.com/app
                  password:
                    from_secret: registry_password
                when:
                  - event: push
            services:
              - name: db
                image: postgres:16.2
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP002 -----------------------------------------------------------------------------


def test_wp002_secret_not_allowed_on_event(lint_tree: LintTree) -> None:
    files = {
        ".shipsure/secrets.yaml": SECRETS,
        ".woodpecker/deploy.yaml": """
            when:
              - event: [push, manual]
            steps:
              deploy:
                image: alpine:3.19.1
                commands: [./deploy.sh]
                environment:
                  VAULT_TOKEN:
                    from_secret: vault_token
                  SLACK_WEBHOOK:
                    from_secret: slack_webhook
        """,
    }
    # vault_token is declared push-only; slack_webhook is undeclared: CLI default, no manual.
    assert wp(lint_tree(files), "WP002") == [
        ("WP002", ".woodpecker/deploy.yaml", 9),
        ("WP002", ".woodpecker/deploy.yaml", 11),
    ]


def test_wp002_passes_when_events_fit(lint_tree: LintTree) -> None:
    files = {
        ".shipsure/secrets.yaml": SECRETS,
        ".woodpecker/deploy.yaml": """
            when:
              - event: [push, manual]
            steps:
              login:
                image: alpine:3.19.1
                commands: [./login.sh]
                environment:
                  PASSWORD:
                    from_secret: registry_password
              deploy:
                image: alpine:3.19.1
                commands: [./deploy.sh]
                environment:
                  VAULT_TOKEN:
                    from_secret: vault_token
                when:
                  - event: push
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP003 -----------------------------------------------------------------------------

_APPLY_MANUAL = """
    when:
      - event: push
        branch: main
      - event: manual{guard}
    steps:
      build:
        image: alpine:3.19.1
        commands: [make {name}]
"""


def test_wp003_manual_trap(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/build.yaml": _APPLY_MANUAL.format(guard="", name="build"),
        ".woodpecker/docs.yaml": _APPLY_MANUAL.format(guard="", name="docs"),
    }
    assert wp(lint_tree(files)) == [
        ("WP003", ".woodpecker/build.yaml", 4),
        ("WP003", ".woodpecker/docs.yaml", 4),
    ]


def test_wp003_passes_with_evaluate_or_a_single_manual_workflow(lint_tree: LintTree) -> None:
    guarded = "\n        evaluate: 'TARGET == \"build\"'"
    files = {
        ".woodpecker/build.yaml": _APPLY_MANUAL.format(guard=guarded, name="build"),
        ".woodpecker/docs.yaml": _APPLY_MANUAL.format(guard="", name="docs"),
    }
    # docs is the only unguarded one, but build is guarded: still two accept manual, so
    # docs is flagged and build is not.
    assert wp(lint_tree(files)) == [("WP003", ".woodpecker/docs.yaml", 4)]
    single = {".woodpecker/docs.yaml": _APPLY_MANUAL.format(guard="", name="docs")}
    assert wp(lint_tree(single)) == []


# --- WP004 -----------------------------------------------------------------------------


def test_wp004_or_trap(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            when:
              - event: push
              - branch: main
            steps:
              test:
                image: alpine:3.19.1
                commands: [make test]
                when:
                  - event: pull_request
                  - evaluate: 'CI_COMMIT_MESSAGE contains "[run]"'
        """,
    }
    assert wp(lint_tree(files)) == [
        ("WP004", ".woodpecker.yaml", 3),
        ("WP004", ".woodpecker.yaml", 10),
    ]


def test_wp004_passes_when_conditions_share_the_item(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            when:
              - event: push
                branch: main
              - event: pull_request
            steps:
              test:
                image: alpine:3.19.1
                commands: [make test]
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP005 -----------------------------------------------------------------------------


def test_wp005_path_on_manual_and_tag(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            when:
              - event: [push, manual, tag]
                path: "stacks/**"
            steps:
              plan:
                image: alpine:3.19.1
                commands: [make plan]
        """,
    }
    assert wp(lint_tree(files)) == [("WP005", ".woodpecker.yaml", 3)]


def test_wp005_passes_on_push_and_pull_request(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            when:
              - event: [push, pull_request]
                path:
                  include: ["stacks/**"]
              - event: manual
            steps:
              plan:
                image: alpine:3.19.1
                commands: [make plan]
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP006 -----------------------------------------------------------------------------


def test_wp006_cron_filters(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/drift.yaml": """
            when:
              - event: cron
            steps:
              drift:
                image: alpine:3.19.1
                commands: [make drift]
        """,
        ".woodpecker/nightly.yaml": """
            when:
              - event: push
                cron: nightly
            steps:
              build:
                image: alpine:3.19.1
                commands: [make]
        """,
    }
    assert wp(lint_tree(files)) == [
        ("WP006", ".woodpecker/drift.yaml", 2),
        ("WP006", ".woodpecker/nightly.yaml", 3),
    ]


def test_wp006_passes_with_named_cron(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/drift.yaml": """
            when:
              - event: cron
                cron: daily-drift
            steps:
              drift:
                image: alpine:3.19.1
                commands: [make drift]
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP007 -----------------------------------------------------------------------------


def test_wp007_no_event_filter(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            steps:
              lint:
                image: alpine:3.19.1
                commands: [make lint]
              test:
                image: alpine:3.19.1
                commands: [make test]
                when:
                  - event: push
        """,
    }
    assert wp(lint_tree(files)) == [("WP007", ".woodpecker.yaml", 2)]


def test_wp007_passes_with_filters_on_every_step(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker.yaml": """
            steps:
              lint:
                image: alpine:3.19.1
                commands: [make lint]
                when:
                  event: pull_request
              test:
                image: alpine:3.19.1
                commands: [make test]
                when:
                  - event: push
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP008 -----------------------------------------------------------------------------


def test_wp008_secret_in_evaluate(lint_tree: LintTree) -> None:
    files = {
        ".shipsure/secrets.yaml": SECRETS,
        ".woodpecker.yaml": """
            when:
              - event: push
                evaluate: 'VAULT_TOKEN != ""'
            steps:
              deploy:
                image: alpine:3.19.1
                commands: [./deploy.sh]
        """,
    }
    assert wp(lint_tree(files)) == [("WP008", ".woodpecker.yaml", 3)]


def test_wp008_passes_for_ci_and_manual_variables(lint_tree: LintTree) -> None:
    files = {
        ".shipsure/secrets.yaml": SECRETS,
        ".woodpecker.yaml": """
            when:
              - event: push
                evaluate: 'CI_COMMIT_BRANCH == "main" && CI_COMMIT_MESSAGE contains "vault_token"'
              - event: manual
                evaluate: 'ISSUE_NUMBER != ""'
            steps:
              deploy:
                image: alpine:3.19.1
                commands: [./deploy.sh]
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP009 -----------------------------------------------------------------------------


def test_wp009_unguarded_apply(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/apply.yaml": """
            when:
              - event: [push, pull_request]
              - event: cron
                cron: nightly
            steps:
              plan:
                image: hashicorp/terraform:1.0.3
                commands: [terraform plan]
              apply:
                image: hashicorp/terraform:1.0.3
                commands:
                  - terraform init
                  - terragrunt run-all apply --terragrunt-non-interactive
        """,
    }
    assert wp(lint_tree(files), "WP009") == [("WP009", ".woodpecker/apply.yaml", 9)]


def test_wp009_passes_with_guards(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/apply.yaml": """
            when:
              - event: push
                branch: main
              - event: manual
                evaluate: 'APPLY == "yes"'
              - event: cron
                cron: nightly-apply
              - event: pull_request
            steps:
              plan:
                image: hashicorp/terraform:1.0.3
                commands: [terraform plan -detailed-exitcode]
              apply:
                image: hashicorp/terraform:1.0.3
                commands: [terraform apply -auto-approve]
                when:
                  - event: [push, manual, cron]
        """,
    }
    assert wp(lint_tree(files)) == []


# --- WP010 -----------------------------------------------------------------------------

_BUILD = """
    when:
      - event: push
    steps:
      build:
        image: alpine:3.19.1
        commands: [make]
"""


def test_wp010_depends_on_filtered_workflow(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/build.yaml": _BUILD,
        ".woodpecker/release.yaml": """
            when:
              - event: [push, tag]
            depends_on:
              - build
              - lint
            steps:
              release:
                image: alpine:3.19.1
                commands: [make release]
        """,
    }
    assert wp(lint_tree(files)) == [
        ("WP010", ".woodpecker/release.yaml", 4),  # build does not run on tag
        ("WP010", ".woodpecker/release.yaml", 5),  # lint does not exist
    ]


def test_wp010_passes_when_optional_or_aligned(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/build.yaml": _BUILD,
        ".woodpecker/release.yaml": """
            when:
              - event: [push, tag]
            depends_on:
              - name: build
                optional: true
            steps:
              release:
                image: alpine:3.19.1
                commands: [make release]
        """,
        ".woodpecker/test.yaml": """
            when:
              - event: push
            depends_on: [build]
            steps:
              test:
                image: alpine:3.19.1
                commands: [make test]
        """,
    }
    assert wp(lint_tree(files)) == []


def test_wp009_knows_an_apply_from_a_plan() -> None:
    from shipsure.lint.woodpecker import Step, is_apply_step
    from shipsure.lint.yaml_lines import load_one

    def step(command: str) -> Step:
        node = load_one(f"image: hashicorp/terraform:1.0.3\ncommands: [{command!r}]\n")
        return Step("s", 1, node, [])

    for command in (
        "terraform apply -auto-approve",
        "terraform -chdir=stacks/dns destroy -auto-approve",
        "terragrunt run-all apply",
        "shipsure stacks run apply --changed",
    ):
        assert is_apply_step(step(command)), command
    for command in ("terraform plan -out=apply.tfplan", "terraform plan -destroy", "echo apply"):
        assert not is_apply_step(step(command)), command


def test_pipeline_folders_linted_directly_are_read_as_pipelines(
    tmp_path: Path,
    lint_json: Callable[..., tuple[int, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `shipsure lint .woodpecker`, or `lint build.yaml` from inside it, is how people check
    # the pipeline they are editing: it must be read as Woodpecker, not as some YAML.
    wp_dir = tmp_path / ".woodpecker"
    wp_dir.mkdir()
    for name in ("build", "docs"):
        text = textwrap.dedent(_APPLY_MANUAL.format(guard="", name=name)).lstrip()
        (wp_dir / f"{name}.yaml").write_text(text.replace("alpine:3.19.1", "alpine:3.19"))
    gh_dir = tmp_path / ".github/workflows"
    gh_dir.mkdir(parents=True)
    (gh_dir / "ci.yml").write_text("on: push\njobs:\n  t:\n    container: node:20\n")

    def rules(*args: str) -> list[tuple[str, str, int]]:
        _, data = lint_json(*args)
        return [(f["rule"], f["path"].rsplit("/", 1)[-1], f["line"]) for f in data["findings"]]

    expected = [
        ("WP003", "build.yaml", 4),
        ("PIN003", "build.yaml", 7),
        ("WP003", "docs.yaml", 4),
        ("PIN003", "docs.yaml", 7),
    ]
    assert rules(str(tmp_path)) == [("PIN003", "ci.yml", 4), *expected]
    assert rules(str(wp_dir)) == expected
    assert rules(str(gh_dir)) == [("PIN003", "ci.yml", 4)]
    monkeypatch.chdir(wp_dir)
    assert rules(".") == expected
    assert rules("docs.yaml") == expected[2:]
