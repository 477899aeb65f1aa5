"""PIN001-PIN005: floating and known-bad image references in every file kind lint reads."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipsure.lint.images import ImageUse, check_image, tag_floats

DIGEST = "sha256:" + "ab" * 32

LintTree = Callable[..., list[tuple[str, str, int]]]
LintJson = Callable[..., tuple[int, dict[str, Any]]]


@pytest.mark.parametrize(
    ("tag", "floats"),
    [
        ("2", True),
        ("2.8", True),
        ("v3", True),
        ("18-alpine", True),
        ("3.12-slim", True),
        ("stable", True),
        ("lts-alpine", True),
        ("alpine", True),
        ("2.8.3", False),
        ("2.8.3-alpine", False),
        ("v1.2.3", False),
        ("20240101", False),
        ("2024.01", False),
        ("3f2a1c9", False),
        ("build-412", False),
    ],
)
def test_tag_floats_rule(tag: str, floats: bool) -> None:
    assert tag_floats(tag) is floats


def _rules(text: str) -> list[str]:
    return [f.kind for f in check_image(ImageUse("f", 1, 1, text, "test"))]


@pytest.mark.parametrize(
    ("image", "rules"),
    [
        ("alpine", ["PIN001"]),
        ("ghcr.io/acme/app", ["PIN001"]),
        ("alpine:latest", ["PIN002"]),
        ("node:latest-alpine", ["PIN002"]),
        ("postgres:15", ["PIN003"]),
        ("registry:2", ["PIN004", "PIN003"]),
        ("registry:2.8.3", ["PIN004"]),
        ("docker.io/distribution/distribution:2.8.3", ["PIN004"]),
        (f"registry:2.8.3@{DIGEST}", ["PIN004"]),
        ("registry:3.0.0", []),
        (f"alpine@{DIGEST}", []),
        (f"alpine:3@{DIGEST}", []),
        ("alpine:3.19.1", []),
        ("localhost:5000/team/app:1.4.2", []),
        ("${IMAGE}", ["PIN005"]),
        ("$REGISTRY/app:1.0.0", ["PIN005"]),
        ("{{ .Values.image }}", ["PIN005"]),
        ("Bad/Name:1.0.0", ["PIN005"]),
    ],
)
def test_image_rules(image: str, rules: list[str]) -> None:
    assert _rules(image) == rules


def test_known_bad_message_names_the_bug() -> None:
    [bad, _] = check_image(ImageUse("c.yml", 4, 12, "registry:2", "compose service registry"))
    assert bad.kind == "PIN004"
    assert "garbage-collect --delete-untagged" in bad.message
    assert "fixed in v3" in bad.message
    assert bad.repository == "docker.io/library/registry"


def test_compose(lint_tree: LintTree) -> None:
    files = {
        "docker-compose.yml": """
            services:
              web:
                image: nginx
              db:
                image: "postgres:15"
              cache:
                image: redis:7.2.4
              app:
                build: .
        """,
        "compose.prod.yaml": f"""
            services:
              web:
                image: nginx:1.25.4@{DIGEST}
        """,
    }
    assert lint_tree(files) == [
        ("PIN001", "docker-compose.yml", 3),
        ("PIN003", "docker-compose.yml", 5),
    ]


def test_kubernetes_multi_document_and_helm_output(lint_tree: LintTree) -> None:
    files = {
        "deploy/rendered.yaml": f"""
            ---
            # Source: app/templates/deployment.yaml
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: app
            spec:
              template:
                spec:
                  initContainers:
                    - name: migrate
                      image: ghcr.io/acme/migrate:latest
                  containers:
                    - name: app
                      image: ghcr.io/acme/app:1.4.2@{DIGEST}
                      env:
                        - name: SIDECAR_IMAGE
                          value: busybox
            ---
            apiVersion: batch/v1
            kind: CronJob
            metadata:
              name: gc
            spec:
              schedule: "0 3 * * 0"
              jobTemplate:
                spec:
                  template:
                    spec:
                      containers:
                        - name: gc
                          image: registry:2.8.3
                      restartPolicy: OnFailure
        """,
        # Not Kubernetes: no apiVersion/kind, never judged.
        "config/app.yaml": "image: nginx\n",
        # A Helm template does not parse as YAML: its actions are neutralized (see
        # test_helm_template_literal_images_are_checked).
        "chart/templates/deployment.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            spec:
              template:
                spec:
                  containers:
                    - image: {{ .Values.image }}
        """,
    }
    assert lint_tree(files) == [
        ("PIN005", "chart/templates/deployment.yaml", 7),
        ("PIN002", "deploy/rendered.yaml", 12),
        ("PIN004", "deploy/rendered.yaml", 32),
    ]


def test_helm_template_literal_images_are_checked(
    tmp_path: Path, lint_json: Callable[..., tuple[int, dict[str, Any]]]
) -> None:
    # `helm create` output plus what charts add by hand: an init container and a sidecar
    # written literally, an image only in one branch of an `if`, a second document.
    files = {
        "chart/templates/deployment.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {{ include "app.fullname" . }}
              labels:
                {{- include "app.labels" . | nindent 4 }}
            spec:
              {{- if not .Values.autoscaling.enabled }}
              replicas: {{ .Values.replicaCount }}
              {{- end }}
              template:
                spec:
                  {{- with .Values.imagePullSecrets }}
                  imagePullSecrets:
                    {{- toYaml . | nindent 8 }}
                  {{- end }}
                  initContainers:
                    - name: wait
                      image: busybox
                  containers:
                    - name: {{ .Chart.Name }}
                      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .x }}"
                      ports:
                        - containerPort: {{ .Values.service.port }}
                    {{- if .Values.metrics.enabled }}
                    - name: exporter
                      image: nginx/nginx-prometheus-exporter:1.1
                    {{- end }}
            ---
            apiVersion: batch/v1
            kind: CronJob
            metadata:
              name: {{ .Release.Name }}-gc
            spec:
              jobTemplate:
                spec:
                  template:
                    spec:
                      containers:
                        - name: gc
                          image: {{ .Values.gc.image }}
                        - name: curl
                          image: curlimages/curl:latest
        """,
        "chart/values.yaml": "image:\n  repository: nginx\n  tag: ''\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    code, data = lint_json(str(tmp_path / "chart"))
    hits = [(f["rule"], f["line"], f["column"], f["message"]) for f in data["findings"]]
    assert [h[:2] for h in hits] == [
        ("PIN001", 19),
        ("PIN005", 22),
        ("PIN003", 27),
        ("PIN005", 41),
        ("PIN002", 43),
    ]
    # Columns point at the image as written; templated names read as written.
    lines = (tmp_path / "chart/templates/deployment.yaml").read_text().splitlines()
    written = ["busybox", '"{{ .Values', "nginx/nginx-prom", "{{ .Values.gc", "curlimages/"]
    for (_, line, column, _), text in zip(hits, written, strict=True):
        assert lines[line - 1][column - 1 :].lstrip('"').startswith(text.lstrip('"'))
    assert hits[0][3].startswith('Deployment {{ include "app.fullname" . }} container wait:')
    assert "'{{ .Values.image.repository }}:{{ .Values.image.tag | default" in hits[1][3]
    assert hits[3][3].startswith("CronJob {{ .Release.Name }}-gc container gc: image '{{ .V")
    assert code == 1


def test_dockerfile_stages_platform_and_args(lint_tree: LintTree) -> None:
    files = {
        "Dockerfile": """
            # syntax=docker/dockerfile:1
            ARG GO_IMAGE=golang:1.22
            ARG RUNTIME=gcr.io/distroless/static-debian12:nonroot
            FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
            RUN go build -o /out/app ./cmd/app
            FROM build AS test
            RUN go test ./...
            FROM ${RUNTIME}
            COPY --from=build /out/app /app
            COPY --from=alpine /etc/ssl/certs /etc/ssl/certs
            COPY --from=0 /out/app /app2
        """,
        "tools/lint.Dockerfile": f"""
            FROM python:3.11.9-slim@{DIGEST} AS base
            FROM scratch
            COPY --from=base /usr /usr
        """,
        "Dockerfile.dev": """
            FROM \\
                node:20
        """,
    }
    assert lint_tree(files) == [
        ("PIN003", "Dockerfile", 4),  # golang:1.22 via ARG GO_IMAGE
        ("PIN001", "Dockerfile", 10),  # COPY --from=alpine
        ("PIN003", "Dockerfile.dev", 2),
    ]


def test_dockerfile_run_mount_from_image(lint_tree: LintTree) -> None:
    # BuildKit pulls the image a `RUN --mount=...,from=` names, as it does for COPY --from.
    files = {
        "Dockerfile": f"""
            FROM golang:1.22.5@{DIGEST} AS tools
            FROM alpine:3.19.1@{DIGEST}
            RUN --mount=type=bind,from=tools,source=/usr/local/go,target=/go true
            RUN --mount=type=cache,target=/root/.cache --mount=from=0,target=/x true
            RUN --mount=type=bind,from=ghcr.io/acme/certs:latest,source=/certs,target=/c \\
                --mount="type=bind,source=/bin,target=/b,from=busybox:1.36" cp /c/* /etc/ssl/
        """,
    }
    assert lint_tree(files) == [("PIN002", "Dockerfile", 5), ("PIN003", "Dockerfile", 6)]


def test_dockerfile_unresolvable_arg_is_info(
    lint_json: Callable[..., tuple[int, dict]], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    code, data = lint_json(str(tmp_path))
    assert [(f["rule"], f["line"], f["severity"]) for f in data["findings"]] == [
        ("PIN005", 2, "info")
    ]
    assert code == 0  # info is below the default --fail-on warning


def test_woodpecker_and_github_images(lint_tree: LintTree) -> None:
    files = {
        ".woodpecker/build.yaml": """
            when:
              - event: push
            steps:
              build:
                image: docker:24
                commands: [docker build .]
            services:
              cache:
                image: redis:7.2.4
        """,
        ".github/workflows/ci.yml": f"""
            on: push
            jobs:
              test:
                runs-on: ubuntu-latest
                container: node:20.11.1
                services:
                  db:
                    image: postgres
                steps:
                  - uses: actions/checkout@v4
                  - uses: docker://alpine:3.19
                  - uses: docker://alpine:3.19.1@{DIGEST}
              matrix:
                runs-on: ubuntu-latest
                container:
                  image: ${{{{ matrix.image }}}}
        """,
    }
    assert lint_tree(files) == [
        ("PIN001", ".github/workflows/ci.yml", 8),
        ("PIN003", ".github/workflows/ci.yml", 11),
        ("PIN005", ".github/workflows/ci.yml", 16),
        ("PIN003", ".woodpecker/build.yaml", 5),
    ]


def test_pin_columns_point_at_the_reference(lint_json: LintJson, tmp_path: Path) -> None:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github/workflows/x.yml").write_text(
        "jobs:\n  a:\n    steps:\n      - uses: 'docker://alpine:3.19'\n"
    )
    _, data = lint_json(str(tmp_path))
    [f] = data["findings"]
    assert (f["line"], f["column"]) == (4, 25)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("Dockerfile", "dockerfile"),
        ("build/Dockerfile.prod", "dockerfile"),
        ("images/api.Dockerfile", "dockerfile"),
        ("Containerfile", "dockerfile"),
        ("shipsure/lint/dockerfile.py", None),
        ("Dockerfile.j2", None),
        ("docker-compose.override.yml", "compose"),
        ("compose.yaml", "compose"),
        (".woodpecker.yaml", "woodpecker"),
        ("ci/.woodpecker/deploy.yml", "woodpecker"),
        (".github/workflows/ci.yml", "github-actions"),
        ("k8s/app.yaml", "yaml"),
        ("README.md", None),
    ],
)
def test_discovery_classifies_by_name(path: str, kind: str | None) -> None:
    from pathlib import PurePosixPath

    from shipsure.lint.discover import classify

    found = classify(PurePosixPath(path))
    assert (found.value if found else None) == kind


def test_gitlab_ci_images(lint_tree: LintTree) -> None:
    files = {
        ".gitlab-ci.yml": """
            include:
              - local: .gitlab/ci/deploy.yml
            image: node:18
            services:
              - postgres:16.1.0
              - name: redis:7
                alias: cache
            default:
              image:
                name: alpine
                entrypoint: [""]
            variables:
              IMAGE: nginx:latest
            .setup:
              image: python:3.12.1
              script: [pip install tox]
            build:
              image: docker:24.0.7
              services: [docker:24-dind]
              script:
                - !reference [.setup, script]
            test:
              extends: .setup
              image: ${CI_REGISTRY}/tools/python:3.12.1
              parallel:
                matrix:
                  - PY: ["3.11", "3.12"]
              rules:
                - if: $CI_PIPELINE_SOURCE == "merge_request_event"
        """,
        ".gitlab/ci/deploy.yml": """
            deploy:
              image: bitnami/kubectl:latest
              script: [kubectl apply -f k8s]
        """,
        "templates/db.gitlab-ci.yml": "migrate:\n  image: flyway/flyway\n",
    }
    # Variables are not images; `!reference` is read, not a parse error.
    assert lint_tree(files) == [
        ("PIN003", ".gitlab-ci.yml", 3),
        ("PIN003", ".gitlab-ci.yml", 6),
        ("PIN001", ".gitlab-ci.yml", 10),
        ("PIN003", ".gitlab-ci.yml", 19),
        ("PIN005", ".gitlab-ci.yml", 24),
        ("PIN002", ".gitlab/ci/deploy.yml", 2),
        ("PIN001", "templates/db.gitlab-ci.yml", 2),
    ]


def test_woodpecker_matrix_images_are_checked_per_row(
    lint_json: Callable[..., tuple[int, dict[str, Any]]], tmp_path: Path
) -> None:
    files = {
        ".woodpecker/build.yaml": """
            when:
              - event: push
            matrix:
              GO: ["1.21", 1.20, 1.22.5]
              DB: [postgres:16.2.0]
            steps:
              build:
                image: golang:${GO}
                commands: [go test ./...]
            services:
              db:
                image: ${DB}
              other:
                image: ${CI_REGISTRY}/cache:${GO}
        """,
        ".woodpecker/rows.yaml": """
            when:
              - event: push
            matrix:
              include:
                - IMAGE: node
                  TAG: 20.11.1
                - IMAGE: node
                  TAG: lts
            steps:
              test:
                image: ${IMAGE}:${TAG}
                commands: [npm test]
        """,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    _, data = lint_json(str(tmp_path))
    found = [
        (f["rule"], f["path"].rsplit("/", 1)[-1], f["line"], f["message"]) for f in data["findings"]
    ]
    # 1.20 is read as written (YAML would make it the float 1.2); 1.22.5 and the pinned
    # database pass; a variable that is not the matrix's stays PIN005.
    assert [f[:3] for f in found] == [
        ("PIN003", "build.yaml", 8),
        ("PIN003", "build.yaml", 8),
        ("PIN005", "build.yaml", 14),
        ("PIN003", "rows.yaml", 11),
    ]
    assert "'golang:1.21'" in found[0][3] and "(matrix GO=1.21)" in found[0][3]
    assert "'golang:1.20'" in found[1][3]
    assert "'${CI_REGISTRY}/cache:${GO}'" in found[2][3]
    assert "'node:lts'" in found[3][3] and "(matrix IMAGE=node, TAG=lts)" in found[3][3]


def test_github_matrix_images_are_checked_per_row(lint_tree: LintTree) -> None:
    files = {
        ".github/workflows/db.yml": """
            on: push
            jobs:
              test:
                runs-on: ubuntu-latest
                strategy:
                  matrix:
                    pg: [14, 16.2.0]
                    python: ["3.12.1"]
                    exclude:
                      - pg: 14
                        python: "3.12.1"
                    include:
                      - pg: 16.2.0
                        redis: "7"
                      - pg: 15
                        python: "3.11.7"
                container: python:${{ matrix.python }}
                services:
                  db:
                    image: postgres:${{ matrix.pg }}
                  cache:
                    image: redis:${{ matrix.redis }}
                  other:
                    image: ${{ matrix.registry }}/x:1.0.0
              dynamic:
                runs-on: ubuntu-latest
                strategy:
                  matrix: ${{ fromJSON(needs.setup.outputs.matrix) }}
                container: ${{ matrix.image }}
        """,
    }
    # Rows: {pg 16.2.0, python 3.12.1, redis 7} ({14, 3.12.1} excluded), {pg 15, python
    # 3.11.7}. postgres:15 floats; redis:7 floats; the row without redis keeps the
    # reference as written (PIN005); a variable no row has, and a computed matrix: PIN005.
    assert lint_tree(files) == [
        ("PIN003", ".github/workflows/db.yml", 20),
        ("PIN003", ".github/workflows/db.yml", 22),
        ("PIN005", ".github/workflows/db.yml", 22),
        ("PIN005", ".github/workflows/db.yml", 24),
        ("PIN005", ".github/workflows/db.yml", 29),
    ]


def test_gitlab_variables_and_parallel_matrix_are_expanded(
    lint_json: Callable[..., tuple[int, dict[str, Any]]], tmp_path: Path
) -> None:
    files = {
        ".gitlab-ci.yml": """
            variables:
              PYTHON_VERSION: "3.12"
              PG:
                value: "16.2.0"
                description: database for tests
            test:
              image: python:${PYTHON_VERSION}
              services: [postgres:$PG]
            legacy:
              variables:
                PYTHON_VERSION: 3.10.13
              image: python:$PYTHON_VERSION
            yaml-number:
              variables:
                PY: 3.10
              image: python:$PY
            matrix:
              parallel:
                matrix:
                  - NODE: ["18", 20.11.1]
                  - NODE: "22"
              image: node:$NODE
            pinned:
              image: $CI_REGISTRY_IMAGE/tools:$PYTHON_VERSION
        """,
    }
    # File variables are the defaults GitLab expands (project variables may override
    # them): 3.12 floats; the job's own 3.10.13 does not; each matrix row is checked;
    # a predefined variable keeps the reference as written.
    # An unquoted 3.10 is the YAML number 3.1, as GitLab reads it too.
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    _, data = lint_json(str(tmp_path))
    hits = [
        (f["rule"], f["path"].rsplit("/", 1)[-1], f["line"], f["message"]) for f in data["findings"]
    ]
    assert "'python:3.1'" in hits[1][3]
    assert [h[:3] for h in hits] == [
        ("PIN003", ".gitlab-ci.yml", 7),
        ("PIN003", ".gitlab-ci.yml", 16),
        ("PIN003", ".gitlab-ci.yml", 22),
        ("PIN003", ".gitlab-ci.yml", 22),
        ("PIN005", ".gitlab-ci.yml", 24),
    ]


def test_helm_template_actions_over_several_lines(lint_tree: LintTree) -> None:
    files = {
        "chart/templates/pod.yaml": """
            {{/*
              The pod's image: comes from values, never written here.
            */}}
            apiVersion: v1
            kind: Pod
            metadata:
              name: {{ include "app.name" (dict
                "context" $ "suffix" "debug") }}
            spec:
              containers:
                - name: shell
                  image: busybox:1.36
        """,
    }
    assert lint_tree(files) == [("PIN003", "chart/templates/pod.yaml", 12)]


def test_argo_and_tekton_containers(lint_tree: LintTree) -> None:
    files = {
        "workflows/ci.yaml": """
            apiVersion: argoproj.io/v1alpha1
            kind: WorkflowTemplate
            metadata:
              name: build
            spec:
              templates:
                - name: test
                  container:
                    image: golang:1.22
                - name: notify
                  script:
                    image: curlimages/curl
                    source: curl -X POST https://example.invalid
                  sidecars:
                    - name: db
                      image: postgres:16.2.0
                - name: fan-out
                  steps:
                    - - name: a
                        template: test
            ---
            apiVersion: tekton.dev/v1
            kind: Task
            metadata:
              name: lint
            spec:
              stepTemplate:
                image: alpine:3.19.1
              steps:
                - name: lint
                  image: golangci/golangci-lint:latest
            ---
            apiVersion: example.com/v1
            kind: Thing
            spec:
              container:
                image: not-an-image-field
              steps:
                - image: nor-this
        """,
    }
    assert lint_tree(files) == [
        ("PIN003", "workflows/ci.yaml", 9),
        ("PIN001", "workflows/ci.yaml", 12),
        ("PIN002", "workflows/ci.yaml", 31),
    ]


def test_helm_neutralizing_stays_linear_on_odd_lines() -> None:
    from shipsure.lint.helm import neutralize

    # Many actions then text on one line (backtracking took 2^n steps), many unclosed
    # `{{` (each tried to the end of the line), an unclosed `{{` across lines.
    many = "{{ a }}" * 200 + " x"
    result = neutralize(f"{many}\n{'{{' * 100_000}\n{{{{ x\n" * 3 + "y: 1\n")
    lines = result.text.split("\n")
    assert len(lines) == 11 and lines[-2] == "y: 1"
    assert lines[0].endswith(" x") and "{{" not in lines[0]
