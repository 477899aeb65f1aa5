"""WP002 and WP010 see through YAML anchors and `when` filters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

LintTree = Callable[..., list[tuple[str, str, int]]]
LintJson = Callable[..., tuple[int, dict[str, Any]]]


def test_wp002_names_every_step_sharing_an_anchor(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/deploy.yaml": """
            variables:
              - &logins
                REGISTRY_PASSWORD:
                  from_secret: registry_password
            when:
              - event: [push, pull_request]
            steps:
              - name: build
                image: woodpeckerci/plugin-docker-buildx:5.0.0
                environment: *logins
              - name: push
                image: woodpeckerci/plugin-docker-buildx:5.0.0
                environment: *logins
        """,
    }
    hits = lint_tree(files)
    assert hits == [("WP002", ".woodpecker/deploy.yaml", 4)]


def test_wp002_message_lists_both_steps(tmp_path: Path, lint_json: LintJson) -> None:
    folder = tmp_path / ".woodpecker"
    folder.mkdir()
    (folder / "a.yaml").write_text(
        "variables:\n"
        "  - &logins {PASS: {from_secret: pw}}\n"
        "when: [{event: pull_request}]\n"
        "steps:\n"
        "  - {name: one, image: 'alpine:3.20.1', environment: *logins, commands: [x]}\n"
        "  - {name: two, image: 'alpine:3.20.1', environment: *logins, commands: [x]}\n"
    )
    _, data = lint_json(str(tmp_path))
    [hit] = [f for f in data["findings"] if f.get("rule") == "WP002"]
    assert "steps one, two run on pull_request" in hit["message"]


_DEPENDANT = """
    when:
      - event: push
    depends_on: [build]
    steps:
      - name: deploy
        image: alpine:3.20.1
        commands: [make deploy]
"""


@pytest.mark.parametrize(
    "build_filter",
    [
        "evaluate: 'CI_COMMIT_MESSAGE contains \"[build]\"'",
        "branch: main",
        "path: 'src/**'",
    ],
)
def test_wp010_dependency_filtered_where_the_dependant_is_not(
    build_filter: str, lint_tree: LintTree
) -> None:
    files = {
        ".woodpecker/build.yaml": f"""
            when:
              - event: push
                {build_filter}
            steps:
              - name: build
                image: alpine:3.20.1
                commands: [make]
        """,
        ".woodpecker/deploy.yaml": _DEPENDANT,
    }
    assert lint_tree(files) == [("WP010", ".woodpecker/deploy.yaml", 3)]


def test_wp010_filtered_dependency_passes_when_optional_or_shared(lint_tree: LintTree) -> None:
    build = """
        when:
          - event: push
            branch: main
        steps:
          - name: build
            image: alpine:3.20.1
            commands: [make]
    """
    files = {
        ".woodpecker/build.yaml": build,
        ".woodpecker/deploy.yaml": """
            when:
              - event: push
                branch: [main]  # the same filter, spelt as a list
            depends_on: [build]
            steps:
              - name: deploy
                image: alpine:3.20.1
                commands: [make deploy]
        """,
        ".woodpecker/notify.yaml": """
            when:
              - event: push
            depends_on:
              - name: build
                optional: true
            steps:
              - name: notify
                image: alpine:3.20.1
                commands: [make notify]
        """,
    }
    assert lint_tree(files) == []


def test_wp010_path_filter_does_not_count_on_tag(lint_tree: LintTree) -> None:
    # `path` is ignored on tag: build runs on every tag, so release is never dropped.
    files = {
        ".woodpecker/build.yaml": """
            when:
              - event: tag
                path: 'src/**'
            steps:
              - name: build
                image: alpine:3.20.1
                commands: [make]
        """,
        ".woodpecker/release.yaml": """
            when:
              - event: tag
            depends_on: [build]
            steps:
              - name: release
                image: alpine:3.20.1
                commands: [make release]
        """,
    }
    assert [h for h in lint_tree(files) if h[0] == "WP010"] == []
