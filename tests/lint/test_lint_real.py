"""`shipsure lint` over files rebuilt from real public repositories (tests/lint/real, each
file names its source): every finding listed here is checked to be right, and nothing else
may be reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REAL = Path(__file__).parent / "real"
LintJson = Callable[..., tuple[int, dict[str, Any]]]

EXPECTED: dict[str, list[tuple[str, str, int]]] = {
    # Sequence merges (`- <<: *when_path`) parse as Woodpecker reads them; `path` on steps
    # that only see push/pull_request is honoured, so no WP005.
    "woodpecker-test": [
        ("PIN003", ".woodpecker/test.yaml", 3),  # golang:1.25 follows each 1.25.x
        # codecov_token is not declared: the default events exclude pull_request.
        ("WP002", ".woodpecker/test.yaml", 53),
        ("PIN003", ".woodpecker/test.yaml", 60),  # postgres:18 service
    ],
    # Preview images on labelled pull requests use a secret the project allows there
    # (declared in .shipsure/secrets.yaml): no WP002. Anchored images report once.
    "woodpecker-docker": [
        ("PIN003", ".woodpecker/docker.yaml", 3),  # golang:1.23
        ("PIN003", ".woodpecker/docker.yaml", 4),  # node:22-alpine
    ],
    "buildx-plugin": [
        ("PIN003", "Dockerfile.multiarch", 6),  # golang:1.20 through ARG GOLANG_VERSION
        ("PIN003", "Dockerfile.multiarch", 17),  # docker:20.10-dind through ARG
        ("WP006", ".woodpecker/lint.yaml", 3),  # lint-dockerfile runs on every cron job
        ("WP005", ".woodpecker/lint.yaml", 16),  # its `path` does not hold on tag and cron
        ("PIN003", ".woodpecker/lint.yaml", 19),  # golang:1.22
        ("WP006", ".woodpecker/publish.yaml", 3),  # vendor runs on every cron job
        ("PIN003", ".woodpecker/publish.yaml", 10),  # golang:1.22 anchor
        ("WP002", ".woodpecker/publish.yaml", 19),  # publish runs on cron; default events
        ("WP002", ".woodpecker/publish.yaml", 21),  # of docker_username/password exclude it
        ("WP006", ".woodpecker/publish.yaml", 40),  # publish on every cron job
    ],
    "gitea-postgres": [
        ("PIN002", "compose.yaml", 4),  # gitea/gitea:latest
        ("PIN003", "compose.yaml", 12),  # postgres:alpine
    ],
    "prometheus-grafana": [
        ("PIN001", "compose.yaml", 4),
        ("PIN001", "compose.yaml", 11),
    ],
    # frontend and backend are built (no image to pin); db uses mongo:latest.
    "react-express-mongodb": [("PIN002", "compose.yaml", 12)],
    "nginx-golang-postgres": [
        ("PIN001", "compose.yaml", 11),
        ("PIN001", "compose.yaml", 16),
    ],
    # netbox (build + image ninech/netbox:${VERSION-latest}) and netbox-worker (merged from
    # it with `<<: *netbox`) are built by compose: no finding for either.
    "netbox-docker": [
        ("PIN003", "docker-compose.yml", 19),  # nginx:1.13-alpine
        ("PIN003", "docker-compose.yml", 22),  # postgres:10.4-alpine
        ("PIN003", "docker-compose.yml", 25),  # redis:4-alpine
    ],
    # golang:1.24.10-alpine3.22 is a full version; the final stage's alpine:3.22 floats.
    "gitea": [("PIN003", "Dockerfile", 24)],
    # Services extending a base in common-services.yml (itself extending in-file) with
    # their own images, started only under a profile: still pulled then, so still linted.
    "defold-extender": [
        ("PIN002", "docker-compose.yml", 6),
        ("PIN002", "docker-compose.yml", 15),
    ],
    "distribution": [("PIN003", "Dockerfile", 2)],  # golang:1.10-alpine
    # Pinned by digest; the heredoc body is data.
    "samba": [],
}


def test_every_fixture_folder_has_expectations() -> None:
    folders = {p.name for p in REAL.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED)
    assert len(folders) >= 12


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_repository_findings(name: str, lint_json: LintJson) -> None:
    root = REAL / name
    _, data = lint_json(str(root))
    prefix = f"{root}/"
    hits = sorted(
        (f.get("rule", f["kind"]), f["path"].removeprefix(prefix), f["line"])
        for f in data["findings"]
    )
    assert hits == sorted(EXPECTED[name])
