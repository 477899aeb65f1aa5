"""Which collector version, and is a registry serving the storage: found from the real
binaries and real registry processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shipsure.errors import UsageError
from shipsure.gc import detect
from shipsure.gc.detect import resolve_version, running_registries, version_from_binary
from shipsure.sandbox.registry import SandboxRegistry, registry_available

from . import seed


@pytest.mark.parametrize("version", [2, 3])
def test_version_from_binary(version: int) -> None:
    if not seed.available(version):
        pytest.skip(f"needs {seed.binary(version)}")
    assert version_from_binary(str(seed.binary(version))) == version


def test_a_binary_that_is_not_a_registry_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        version_from_binary("/bin/true")
    with pytest.raises(UsageError):
        version_from_binary(str(tmp_path / "absent"))


@pytest.mark.parametrize("script", ["hangs", "spams"])
def test_a_binary_that_hangs_or_spams_is_stopped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    # A wrapper script's own children go too (they held the output open for ever), and
    # endless output is read no further than needed.
    monkeypatch.setattr(detect, "VERSION_TIMEOUT_SECONDS", 0.5)
    child = tmp_path / "child.pid"
    binary = tmp_path / "registry"
    body = "sleep 1000 & echo $! > " + str(child) + "; wait" if script == "hangs" else "yes spam"
    binary.write_text(f"#!/bin/sh\n{body}\n")
    binary.chmod(0o755)
    with pytest.raises(UsageError):
        version_from_binary(str(binary))
    if script == "hangs":
        pid = int(child.read_text())
        # Killed with its group; init reaps it (a zombie counts as gone).
        for _ in range(500):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
            except FileNotFoundError:
                break
            if state == "Z":
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"sleep {pid} outlived the version check")


@pytest.mark.skipif(not registry_available(), reason="needs docker-registry (scripts/setup.sh)")
@pytest.mark.parametrize("readonly", [False, True])
def test_a_registry_serving_the_root_is_found(tmp_path: Path, readonly: bool) -> None:
    root = tmp_path / "storage"
    other = tmp_path / "other"
    root.mkdir()
    other.mkdir()
    with SandboxRegistry(root, readonly=readonly) as registry:
        # Other registries on this machine may show as "could not tell" (same_root None).
        found = [r for r in running_registries(str(root)) if r.same_root is not None]
        assert [(r.pid, r.same_root, r.readonly) for r in found] == [(registry.pid, True, readonly)]
        assert all(r.same_root is None for r in running_registries(str(other)))
        assert resolve_version(None, None, str(root)) == (2, f"registry pid {registry.pid}")
    with pytest.raises(UsageError):
        resolve_version(None, None, str(root))
