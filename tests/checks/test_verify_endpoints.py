"""A reference whose host:port is not the registry the user thinks: a plain web server on
the port (its 404 is no registry's answer). Nothing was checked there, so it is a
check-error (exit 3) for verify and restore, never a missing tag (exit 1) or a rebuild plan."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial

import pytest

from shipsure.cli.main import main
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m http.server` on a free port: 404 (an HTML page) for every /v2/ path."""
    folder = tmp_path_factory.mktemp("www")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *_args: None  # type: ignore[attr-defined,method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_verify_of_a_web_server_is_a_check_error_not_a_missing_tag(
    web_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = [f"{web_server}/team/app:1.0", f"{web_server}/team/app@sha256:{'a' * 64}"]
    assert main(["verify", "--format", "json", *refs]) == 3
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [f["kind"] for f in findings] == ["check-error", "check-error"]
    assert all("does not serve the registry API" in f["message"] for f in findings)


def test_restore_into_a_web_server_plans_nothing_and_says_it_could_not_check(
    web_server: str, registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    code = main(["restore", f"{web_server}/{repo_name}:v1", "--from", registry.host])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "rebuild" not in out and "does not serve the registry API" in out


def test_a_real_registrys_missing_tag_is_still_tag_not_found(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    assert main(["verify", "--format", "json", f"{registry.host}/{repo_name}:gone"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [f["kind"] for f in findings] == ["tag-not-found"]
