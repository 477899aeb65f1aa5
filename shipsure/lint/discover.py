"""Which files `shipsure lint` reads, and as what. Pure path logic plus one directory walk.

- Dockerfiles: `Dockerfile`, `Containerfile`, `*.Dockerfile`, `Dockerfile.*` (not templates
  or code such as `Dockerfile.j2`, `dockerfile.py`)
- compose: `docker-compose*.yml|yaml`, `compose*.yml|yaml`
- Woodpecker: `.woodpecker.yml|yaml`, `.woodpecker/*.yml|yaml`
- GitHub Actions: `.github/workflows/*.yml|yaml`
- GitLab CI: `.gitlab-ci.yml|yaml`, `*.gitlab-ci.yml|yaml`, `.gitlab/ci/**/*.yml|yaml`
- any other `*.yml|yaml`: read for Kubernetes documents (`apiVersion` + `kind`)

Never descends into `.git`, `node_modules`, `.venv`, `venv`, `__pycache__`, `.terraform`,
`.terragrunt-cache` or `.shipsure` (lint's own config), and never follows directory symlinks
(no loops).
"""

from __future__ import annotations

import enum
import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

SKIP_DIRS = frozenset(
    {".git", "node_modules", ".venv", "venv", "__pycache__", ".terraform", ".shipsure"}
    | {".terragrunt-cache"}  # Terragrunt's copies of module sources
)


_NOT_DOCKERFILE_SUFFIXES = frozenset(
    {"py", "go", "rs", "js", "ts", "sh", "md", "rst", "txt", "json", "toml", "yml", "yaml"}
    | {"j2", "jinja", "tpl", "tmpl", "template", "bak", "orig", "swp", "dockerignore"}
)


class FileKind(enum.Enum):
    DOCKERFILE = "dockerfile"
    COMPOSE = "compose"
    WOODPECKER = "woodpecker"
    GITHUB = "github-actions"
    GITLAB = "gitlab-ci"
    YAML = "yaml"


def _is_yaml(name: str) -> bool:
    return name.endswith((".yml", ".yaml"))


def classify(rel: PurePosixPath) -> FileKind | None:
    """The kind of a file from its path relative to the linted root."""
    name = rel.name
    lower = name.lower()
    if lower in ("dockerfile", "containerfile") or lower.endswith(".dockerfile"):
        return FileKind.DOCKERFILE
    # `Dockerfile.dev` is a Dockerfile; `Dockerfile.j2` a template, `dockerfile.py` code.
    if (
        name.startswith(("Dockerfile.", "Containerfile."))
        and name.rsplit(".", 1)[1].lower() not in _NOT_DOCKERFILE_SUFFIXES
    ):
        return FileKind.DOCKERFILE
    if not _is_yaml(name):
        return None
    if name in (".woodpecker.yml", ".woodpecker.yaml") or rel.parent.name == ".woodpecker":
        return FileKind.WOODPECKER
    if rel.parent.name == "workflows" and rel.parent.parent.name == ".github":
        return FileKind.GITHUB
    in_gitlab_ci = "/.gitlab/ci/" in f"/{rel.parent.as_posix()}/"
    if name.endswith((".gitlab-ci.yml", ".gitlab-ci.yaml")) or in_gitlab_ci:
        return FileKind.GITLAB
    if fnmatch.fnmatch(name, "docker-compose*.y*ml") or fnmatch.fnmatch(name, "compose*.y*ml"):
        return FileKind.COMPOSE
    return FileKind.YAML


def walk(root: Path) -> Iterator[PurePosixPath]:
    """Relative paths of every file under `root` that `classify` knows, sorted."""
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        base = PurePosixPath(Path(current).relative_to(root).as_posix())
        for name in sorted(files):
            rel = base / name if str(base) != "." else PurePosixPath(name)
            if classify(rel) is not None:
                yield rel


def woodpecker_group(rel: PurePosixPath) -> PurePosixPath:
    """Workflows that run together: the files of one `.woodpecker/` folder, or one
    `.woodpecker.yaml`."""
    return rel.parent if rel.parent.name == ".woodpecker" else rel


def workflow_name(rel: PurePosixPath) -> str:
    """Woodpecker names a workflow after its file, without the extension."""
    if rel.parent.name != ".woodpecker":
        return "woodpecker"
    return rel.name.rsplit(".", 1)[0]
