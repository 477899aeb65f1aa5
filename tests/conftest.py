"""Shared fixtures: a real distribution registry on 127.0.0.1, started once per session.

Tests share the session registry and keep out of each other's way by pushing to the unique
repository `repo_name` gives them. Tests that garbage-collect or break storage as a whole
take `fresh_registry`, which is theirs alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest

from shipsure.sandbox.registry import REGISTRY_BINARY, SandboxRegistry, registry_available

_NEEDS_REGISTRY = f"needs {REGISTRY_BINARY} (Debian package docker-registry; scripts/setup.sh)"


def _require_registry() -> None:
    if not registry_available():
        pytest.skip(_NEEDS_REGISTRY)


@pytest.fixture(scope="session")
def registry() -> Iterator[SandboxRegistry]:
    """A registry for the whole run, no blob cache: HEAD reflects what is on disk."""
    _require_registry()
    with SandboxRegistry() as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def cached_registry() -> Iterator[SandboxRegistry]:
    """A registry with the in-memory blob-descriptor cache (registry-facts §3)."""
    _require_registry()
    with SandboxRegistry(blob_cache="inmemory") as sandbox:
        yield sandbox


@pytest.fixture
def fresh_registry() -> Iterator[SandboxRegistry]:
    """A registry of this test's own, for garbage collection or storage-wide damage."""
    _require_registry()
    with SandboxRegistry() as sandbox:
        yield sandbox


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
