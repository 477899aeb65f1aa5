"""Woodpecker files read as Woodpecker reads them: sequence merges, shared anchors, filtered
dependencies, and files that truly cannot be parsed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipsure.lint.yaml_lines import YamlLimitError, load_one

LintTree = Callable[..., list[tuple[str, str, int]]]
LintJson = Callable[..., tuple[int, dict[str, Any]]]


def test_a_sequence_merged_into_a_sequence_is_read_and_linted(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/build.yaml": """
            variables:
              - &pre_cmds
                - apk add make
                - make deps
              - &post [make clean]
            when:
              - event: push
            steps:
              - name: build
                image: golang:1.22.5
                commands:
                  - <<: *pre_cmds
                  - make
                  - <<: [*pre_cmds, *post]
              - name: publish
                image: alpine:latest
                commands: [make publish]
        """,
    }
    assert lint_tree(files) == [("PIN002", ".woodpecker/build.yaml", 16)]


def test_sequence_merge_items_take_the_anchored_items_in_place() -> None:
    text = "a: &a [x, y]\nb: [w, {<<: *a}, z, {<<: [*a, *a]}]\nc: {<<: {k: 1}, j: 2}\n"
    doc = load_one(text, sequence_merge=True)
    assert doc["b"] == ["w", "x", "y", "z", "x", "y", "x", "y"]
    assert doc["c"] == {"k": 1, "j": 2}  # an ordinary mapping merge is unchanged


def test_nested_sequence_merges_are_bounded() -> None:
    lines = ["l0: &l0 [x]"]
    lines += [f"l{i}: &l{i} [{{<<: *l{i - 1}}}]" for i in range(1, 40)]
    with pytest.raises(YamlLimitError):
        load_one("\n".join(lines) + "\n", sequence_merge=True)


@pytest.mark.parametrize(
    "text",
    [
        "m: &m {k: v}\nl: [{<<: *m}]\n",  # a mapping merged into a list
        "l: [{<<: [x, y]}]\n",  # not aliases
    ],
)
def test_sequence_merges_woodpecker_refuses_are_errors(text: str) -> None:
    with pytest.raises(yaml.YAMLError, match="alias to a sequence"):
        load_one(text, sequence_merge=True)


def test_compose_and_kubernetes_keep_plain_mapping_merges() -> None:
    doc = load_one("m: &m {k: v}\nl: [{<<: *m, j: 1}, {<<: *m}]\n")
    assert doc["l"] == [{"k": "v", "j": 1}, {"k": "v"}]


def test_a_file_that_cannot_parse_names_the_rules_not_run(
    tmp_path: Path, lint_json: LintJson
) -> None:
    folder = tmp_path / ".woodpecker"
    folder.mkdir()
    (folder / "x.yaml").write_text("steps:\n  - name: a\n    image: [alpine:latest\n")
    (tmp_path / "docker-compose.yml").write_text("services:\n  web: {image: nginx\n")
    _, data = lint_json(str(tmp_path))
    messages = {f["rule"] if "rule" in f else f["kind"]: f["message"] for f in data["findings"]}
    assert "PIN001-PIN005, WP002-WP010" in messages["WP001"]
    assert "rules not run on it: PIN001-PIN005" in messages["check-error"]
