"""Fixtures for restore tests: a target and a source registry seeded with the same images."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipsure.sandbox import images
from shipsure.sandbox.images import PushedArtifact, PushedIndex
from shipsure.sandbox.registry import Flavour, SandboxRegistry, missing_reason, registry_available


def require_registry(flavour: Flavour = "2.8") -> None:
    if not registry_available(flavour):
        pytest.skip(missing_reason(flavour))


def require_skopeo() -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo (Debian package skopeo; scripts/setup.sh)")


@pytest.fixture
def second_registry(registry_flavour: Flavour) -> Iterator[SandboxRegistry]:
    """A registry of this test's own (the flavour under test) that serves as the intact copy."""
    require_registry(registry_flavour)
    with SandboxRegistry(flavour=registry_flavour) as sandbox:
        yield sandbox


@dataclass
class Seeded:
    app: PushedIndex  # OCI index, three platforms, BuildKit attestations
    api: PushedIndex  # Docker manifest list
    nested: PushedIndex  # an index inside an index
    sbom: PushedArtifact  # a referrer of app, listed by its sha256-<hex> tag

    def refs(self, host: str) -> list[str]:
        return [f"{host}/team/app:latest", f"{host}/team/api:latest", f"{host}/team/nested:latest"]


def seed(registry: SandboxRegistry) -> Seeded:
    app = images.push_index(registry.url, "team/app", "latest", attestations=True)
    api = images.push_index(registry.url, "team/api", "latest", kind="docker")
    nested = images.push_index(registry.url, "team/nested", "latest", nested=True)
    sbom = images.push_artifact(registry.url, "team/app", app)
    return Seeded(app, api, nested, sbom)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=300, check=False
    )


def copy_all_out(host: str, repo: str, dest: Path, *, preserve: bool = True) -> str:
    """A real `skopeo copy --all` pull of `repo:latest` into an OCI layout; the stderr."""
    flags = ["--preserve-digests"] if preserve else []
    done = skopeo(
        "copy",
        "--all",
        *flags,
        "--src-tls-verify=false",
        f"docker://{host}/{repo}:latest",
        f"oci:{dest}:latest",
    )
    assert done.returncode == 0, done.stderr
    return done.stderr
