"""Compose files read with compose's semantics: build, extends, include, profiles, .env."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipsure.cli.main import main
from shipsure.lint.compose import Unresolved, interpolate

LintTree = Callable[..., list[tuple[str, str, int]]]
LintJson = Callable[..., tuple[int, dict[str, Any]]]


def test_build_and_image_names_the_image_compose_builds(lint_tree: LintTree) -> None:
    files = {
        "docker-compose.yml": """
            services:
              app:
                build: .
                image: registry.example.com/team/app
              worker:
                build:
                  context: ./worker
                image: registry.example.com/team/worker:latest
              db:
                image: postgres:16
        """,
    }
    assert lint_tree(files) == [("PIN003", "docker-compose.yml", 10)]


def test_fix_leaves_a_built_image_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = tmp_path / "compose.yaml"
    text = "services:\n  app:\n    build: .\n    image: registry.example.com/a\n"
    compose.write_text(text)
    code = main(["lint", "--fix", "--apply", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "registry.example.com/a" not in out
    assert compose.read_text() == text


def test_extends_reports_the_base_file_and_line(lint_tree: LintTree) -> None:
    files = {
        "common-services.yml": """
            services:
              webapp:
                image: nginx:1
                environment: {A: "1"}
              builder:
                build: ./builder
                image: registry.example.com/builder
        """,
        "docker-compose.yml": """
            services:
              web:
                extends:
                  file: common-services.yml
                  service: webapp
              web2:
                extends: {file: common-services.yml, service: webapp}
                image: nginx:1.27.2
              built:
                extends: {file: common-services.yml, service: builder}
              local:
                extends: web
        """,
    }
    # web and local (through web) inherit nginx:1, written once, at common-services.yml:3.
    assert lint_tree(files) == [("PIN003", "common-services.yml", 3)]


def test_extends_names_the_service_it_comes_from(tmp_path: Path, lint_json: LintJson) -> None:
    (tmp_path / "base.yml").write_text("services:\n  webapp:\n    image: nginx:1\n")
    (tmp_path / "compose.yml").write_text(
        "services:\n  web:\n    extends: {file: base.yml, service: webapp}\n"
    )
    _, data = lint_json(str(tmp_path))
    [hit] = data["findings"]
    assert hit["path"].endswith("base.yml") and hit["line"] == 3
    assert "compose service web (extends webapp in" in hit["message"]


def test_a_missing_extends_file_is_a_check_error(tmp_path: Path, lint_json: LintJson) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n  web:\n    extends: {file: gone.yml, service: webapp}\n"
    )
    code, data = lint_json(str(tmp_path))
    [hit] = data["findings"]
    assert (hit["kind"], code) == ("check-error", 3)
    assert "gone.yml: cannot be read" in hit["message"]


def test_include_reads_the_included_project_with_its_own_env(lint_tree: LintTree) -> None:
    files = {
        "compose.yaml": """
            include:
              - infra/db.yaml
              - path: monitoring/compose.monitoring.yaml
            services:
              app:
                image: registry.example.com/app:2.1.0
        """,
        "infra/db.yaml": """
            services:
              db:
                image: "postgres:${PG_VERSION}"
        """,
        "infra/.env": "PG_VERSION=16\n",
        "monitoring/compose.monitoring.yaml": """
            services:
              prometheus:
                image: prom/prometheus:latest
        """,
    }
    assert lint_tree(files) == [
        ("PIN003", "infra/db.yaml", 3),  # postgres:16, from infra/.env
        ("PIN002", "monitoring/compose.monitoring.yaml", 3),  # once, though also linted alone
    ]


def test_profiles_are_linted_and_named(tmp_path: Path, lint_json: LintJson) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n  debug:\n    image: busybox\n    profiles: [debug, tools]\n"
    )
    _, data = lint_json(str(tmp_path))
    [hit] = data["findings"]
    assert hit["rule"] == "PIN001"
    assert "compose service debug (profiles: debug, tools)" in hit["message"]


def test_env_file_interpolation(lint_tree: LintTree) -> None:
    files = {
        ".env": "# versions\nNGINX_TAG=1.27.2\nREDIS_TAG='7'\nEMPTY=\n",
        "docker-compose.yml": """
            services:
              web:
                image: nginx:${NGINX_TAG}
              cache:
                image: redis:$REDIS_TAG
              proxy:
                image: traefik:${TRAEFIK_TAG:-v3.1.6}
              db:
                image: postgres:${EMPTY:-16}
              db2:
                image: postgres:${EMPTY-16.4.1}
              app:
                image: registry.example.com/app:${APP_TAG}
        """,
    }
    assert lint_tree(files) == [
        ("PIN003", "docker-compose.yml", 5),  # redis:7
        ("PIN003", "docker-compose.yml", 9),  # postgres:16 (EMPTY is empty: `:-` applies)
        ("PIN005", "docker-compose.yml", 11),  # `postgres:`, no valid reference (EMPTY is set)
        ("PIN005", "docker-compose.yml", 13),  # APP_TAG is not set anywhere
    ]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("a:${V}", {"V": "1"}, "a:1"),
        ("a:$V-x", {"V": "1"}, "a:1-x"),
        ("a:${V:-d}", {"V": ""}, "a:d"),
        ("a:${V-d}", {"V": ""}, "a:"),
        ("a:${V-d}", {}, "a:d"),
        ("a:${V:+set}", {"V": "1"}, "a:set"),
        ("a:${V+set}", {"V": ""}, "a:set"),
        ("a:${V:+set}", {"V": ""}, "a:"),
        ("a:${V:-${W:-nested}}", {}, "a:nested"),
        ("a:$${V}", {}, "a:${V}"),
        ("a:${V:?needed}", {"V": "x"}, "a:x"),
    ],
)
def test_interpolation_follows_compose(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env)[0] == expected


@pytest.mark.parametrize("text", ["a:${V}", "a:$V", "a:${V:?set it}", "a:${V?x}", "a:${V"])
def test_unset_variables_are_unresolved(text: str) -> None:
    with pytest.raises(Unresolved):
        interpolate(text, {})
