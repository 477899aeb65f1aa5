"""The sandbox registry starts, answers, restarts and cleans up after itself."""

from __future__ import annotations

import httpx

from shipsure.sandbox.registry import SandboxRegistry


def test_registry_answers_v2_and_cleans_up() -> None:
    with SandboxRegistry() as sandbox:
        workdir = sandbox.workdir
        assert sandbox.host.startswith("127.0.0.1:")
        assert sandbox.url == f"http://{sandbox.host}"
        response = httpx.get(f"{sandbox.url}/v2/", timeout=5)
        assert response.status_code == 200
        assert sandbox.config_path.is_file()
        assert sandbox.root.is_dir()
    assert not workdir.exists()


def test_restart_keeps_port_and_storage(fresh_registry: SandboxRegistry) -> None:
    registry = fresh_registry
    url = registry.url
    registry.restart()
    assert registry.url == url
    assert httpx.get(f"{url}/v2/", timeout=5).status_code == 200
