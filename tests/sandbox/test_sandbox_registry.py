"""The sandbox registry starts, answers, restarts and cleans up after itself."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from shipsure.sandbox import SandboxError, images
from shipsure.sandbox import registry as registry_module
from shipsure.sandbox.registry import (
    Flavour,
    SandboxRegistry,
    missing_reason,
    registry_available,
)


def require_registry(flavour: Flavour) -> None:
    if not registry_available(flavour):
        pytest.skip(missing_reason(flavour))


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


class _EventSink(http.server.BaseHTTPRequestHandler):
    """Collects what the registry's notifications endpoint POSTs (distribution envelopes)."""

    received: ClassVar[list[dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.extend(json.loads(body)["events"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.both_registries
def test_notifications_endpoint_gets_push_events(registry_flavour: Flavour) -> None:
    require_registry(registry_flavour)

    class Sink(_EventSink):
        received: ClassVar[list[dict[str, Any]]] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sink = f"http://127.0.0.1:{server.server_address[1]}/events"
        with SandboxRegistry(flavour=registry_flavour, notifications=sink) as sandbox:
            image = images.push_image(sandbox.url, "team/app", "v1")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                e["target"].get("tag") == "v1" for e in Sink.received
            ):
                time.sleep(0.05)
        pushed = [e for e in Sink.received if e["action"] == "push"]
        manifest = [e for e in pushed if e["target"].get("tag") == "v1"]
        assert [e["target"]["digest"] for e in manifest] == [image.digest]
        assert manifest[0]["target"]["repository"] == "team/app"
    finally:
        server.shutdown()
        server.server_close()


def test_v3_starts_with_the_same_options_and_reports_a_missing_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require_registry("3")
    with SandboxRegistry(flavour="3", readonly=True) as sandbox:
        assert httpx.get(f"{sandbox.url}/v2/", timeout=5).status_code == 200
        refused = httpx.post(f"{sandbox.url}/v2/team/app/blobs/uploads/", timeout=5)
        assert refused.status_code == 405  # read-only: uploads refused, reads served
        environment = Path(f"/proc/{sandbox.pid}/environ").read_bytes().split(b"\0")
        assert b"OTEL_TRACES_EXPORTER=none" in environment
    monkeypatch.setenv("SHIPSURE_PEERS_BIN", str(tmp_path))
    with pytest.raises(SandboxError, match=r"needs registry in .* scripts/peers\.sh"):
        SandboxRegistry(flavour="3").start()
