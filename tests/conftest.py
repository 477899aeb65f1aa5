"""Shared fixtures: a real distribution registry on 127.0.0.1, started once per session.

Tests share the session registry and keep out of each other's way by pushing to the unique
repository `repo_name` gives them. Tests that garbage-collect or break storage as a whole
take `fresh_registry`, which is theirs alone.

Two registries: Debian's distribution 2.8.2 and distribution v3 (built by
scripts/peers.sh). A test or module marked `both_registries` runs once against each (ids
`v2.8` / `v3`); every other test runs against 2.8 only, so the suite does not double.
A test that needs one flavour asks `registry_flavour` and skips; v3 tests skip with the
reason when its binary has not been built.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipsure.sandbox.registry import (
    FLAVOURS,
    Flavour,
    SandboxRegistry,
    missing_reason,
    registry_available,
)

BOTH_REGISTRIES = "both_registries"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{BOTH_REGISTRIES}: run against distribution 2.8 and v3 (tests/conftest.py)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `registry_flavour` over both flavours for tests marked `both_registries`.

    Session scope: each flavour's session registry is started once, not once per test.
    """
    if "registry_flavour" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker(BOTH_REGISTRIES) is None:
        return
    metafunc.parametrize(
        "registry_flavour",
        FLAVOURS,
        ids=[f"v{flavour}" for flavour in FLAVOURS],
        indirect=True,
        scope="session",
    )


@pytest.fixture(scope="session")
def registry_flavour(request: pytest.FixtureRequest) -> Flavour:
    """ "2.8" unless the test is marked `both_registries` (then each in turn)."""
    flavour: Flavour = getattr(request, "param", "2.8")
    return flavour


def require_registry(flavour: Flavour = "2.8") -> None:
    if not registry_available(flavour):
        pytest.skip(missing_reason(flavour))


@pytest.fixture(scope="session")
def registry(registry_flavour: Flavour) -> Iterator[SandboxRegistry]:
    """A registry for the whole run, no blob cache: HEAD reflects what is on disk."""
    require_registry(registry_flavour)
    with SandboxRegistry(flavour=registry_flavour) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def cached_registry(registry_flavour: Flavour) -> Iterator[SandboxRegistry]:
    """A registry with the in-memory blob-descriptor cache (registry-facts §3)."""
    require_registry(registry_flavour)
    with SandboxRegistry(flavour=registry_flavour, blob_cache="inmemory") as sandbox:
        yield sandbox


@pytest.fixture
def fresh_registry(registry_flavour: Flavour) -> Iterator[SandboxRegistry]:
    """A registry of this test's own, for garbage collection or storage-wide damage."""
    require_registry(registry_flavour)
    with SandboxRegistry(flavour=registry_flavour) as sandbox:
        yield sandbox


@pytest.fixture
def fresh_v3_registry() -> Iterator[SandboxRegistry]:
    """Distribution v3 of this test's own, for tests of what only v3 does."""
    require_registry("3")
    with SandboxRegistry(flavour="3") as sandbox:
        yield sandbox


@dataclass(frozen=True)
class HtpasswdRegistry:
    """A registry with `auth: htpasswd` (basic auth) and the one user it knows."""

    registry: SandboxRegistry
    username: str
    password: str


@pytest.fixture(scope="session")
def htpasswd_registry(registry_flavour: Flavour) -> Iterator[HtpasswdRegistry]:
    """A registry for the whole run that asks for basic auth (both flavours support
    `auth: htpasswd`; bcrypt entries only, as `htpasswd -B` writes them)."""
    require_registry(registry_flavour)
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        pytest.skip("needs htpasswd (Debian package apache2-utils; scripts/setup.sh)")
    username, password = "ci", "pw-" + "K9wq" * 6
    with tempfile.TemporaryDirectory(prefix="shipsure-htpasswd-") as workdir:
        users = Path(workdir) / "htpasswd"
        subprocess.run(
            [htpasswd, "-Bbc", str(users), username, password], check=True, capture_output=True
        )
        auth = {"htpasswd": {"realm": "shipsure-test", "path": str(users)}}
        with SandboxRegistry(flavour=registry_flavour, extra_config={"auth": auth}) as sandbox:
            yield HtpasswdRegistry(sandbox, username, password)


_NOT_NAME_CHARACTERS = re.compile(r"[^a-z0-9]+")


def unique_repository_name(node_id: str) -> str:
    """A valid repository name, unique per test: readable test name + hash of its node id.

    distribution's grammar: components of [a-z0-9] runs joined by `.`, `_`, `__` or `-`.
    """
    test_name = node_id.rsplit("::", 1)[-1]
    readable = _NOT_NAME_CHARACTERS.sub("-", test_name.lower()).strip("-")[:60].strip("-")
    suffix = hashlib.sha256(node_id.encode()).hexdigest()[:8]
    return f"t/{readable or 'test'}-{suffix}"


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name no other test uses, e.g. `t/test-push-index-1a2b3c4d`."""
    return unique_repository_name(request.node.nodeid)
