"""The sandbox registry starts, answers, restarts and cleans up after itself."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from shipsure.sandbox import SandboxError
from shipsure.sandbox import registry as registry_module
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


def test_a_failed_start_names_the_port_and_shows_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(registry_module, "_free_port", lambda: port)
        sandbox = SandboxRegistry()
        with pytest.raises(
            SandboxError, match=rf"127\.0\.0\.1:{port} exited .*address already in use"
        ):
            sandbox.start()
    assert sandbox.pid is None
    with pytest.raises(SandboxError, match="not started"):
        _ = sandbox.url


def test_registry_process_never_sees_aws_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("REGISTRY_STORAGE_DELETE_ENABLED", "false")
    with SandboxRegistry() as sandbox:
        environment = Path(f"/proc/{sandbox.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environment if v.startswith((b"AWS_CA_BUNDLE=", b"REGISTRY_"))]


def test_config_is_what_the_tests_rely_on(registry: SandboxRegistry) -> None:
    config = json.loads(registry.config_path.read_text())
    storage = config["storage"]
    assert storage["delete"] == {"enabled": True}
    assert storage["maintenance"]["uploadpurging"] == {"enabled": False}
    assert "cache" not in storage
    assert config["http"]["addr"] == registry.host
    assert config["log"]["level"] == "warn"


def test_extra_config_with_auth_is_ready_on_its_challenge() -> None:
    # distribution's "silly" auth challenges every request without an Authorization header.
    silly = {"silly": {"realm": "sandbox", "service": "sandbox"}}
    with SandboxRegistry(extra_config={"auth": silly}) as sandbox:
        response = httpx.get(f"{sandbox.url}/v2/", timeout=5)
        assert response.status_code == 401
        assert "realm" in response.headers["www-authenticate"]
        authorized = httpx.get(
            f"{sandbox.url}/v2/", headers={"Authorization": "Bearer x"}, timeout=5
        )
        assert authorized.status_code == 200
