"""The seam under the client: the default wire never loads httpx, URLs and headers are
handled as HTTP says, encoded bodies are decoded within bounds, and proxies still work."""

from __future__ import annotations

import gzip
import json
import os
import socketserver
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.registry.interface import ProtocolError
from shipsure.registry.transport import KeepAliveWire
from shipsure.registry.wire import (
    Headers,
    InvalidURL,
    Request,
    Timeouts,
    join_url,
    normalize_url,
    origin_of,
    target_of,
)
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry

from .conftest import no_sleep_policy

# Whatever the environment says, the child process must take the default network path.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_HTTPX_FAMILY = ("httpx", "httpcore", "h11", "anyio")

_CHILD = """
import sys
from shipsure.cli.main import main
code = main(sys.argv[1:])
loaded = sorted(
    name for name, module in sys.modules.items()
    if module is not None and name.split(".")[0] in {family!r}
)
print("LOADED", ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


def test_verify_on_the_default_path_never_imports_httpx(
    registry: SandboxRegistry, repo_name: str
) -> None:
    pushed = images.push_index(registry.url, repo_name, "v1", attestations=True)
    env = {
        name: value for name, value in os.environ.items() if name.lower() not in _PROXY_VARIABLES
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD.format(family=_HTTPX_FAMILY),
            "verify",
            "--format",
            "json",
            f"{registry.host}/{pushed.repo}:v1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["findings"] == []
    assert "LOADED \n" in done.stderr  # nothing of httpx's family was imported


# -- URLs and headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://Registry.Example.com:443/v2/", "https://registry.example.com/v2/"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/"),
        ("http://[::1]:5000/v2/a?n=1", "http://[::1]:5000/v2/a?n=1"),
        ("https://s3.test/a b?x=1 2#frag", "https://s3.test/a%20b?x=1%202"),
        ("https://s3.test/already%2Fescaped", "https://s3.test/already%2Fescaped"),
        ("ftp://elsewhere/x", "ftp://elsewhere/x"),  # the caller refuses it by name
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["https://", "http://[::1/x", "https://h:99999/", "http://a b/"])
def test_invalid_urls(bad: str) -> None:
    with pytest.raises(InvalidURL):
        normalize_url(bad)


def test_join_and_split() -> None:
    base = "https://r.test/v2/_catalog?n=1"
    assert join_url(base, "/v2/_catalog?n=1&last=a") == "https://r.test/v2/_catalog?n=1&last=a"
    assert join_url(base, "//cdn.test/blob") == "https://cdn.test/blob"
    assert origin_of("https://r.test:5000/v2/x") == "https://r.test:5000"
    assert target_of("https://r.test:5000/v2/x?y=1") == "/v2/x?y=1"


def test_headers_are_case_insensitive_and_join_repeats() -> None:
    headers = Headers([("Content-Length", "4"), ("Link", "<a>"), ("link", "<b>")])
    assert headers.get("content-length") == "4"
    assert headers.get("LINK") == "<a>, <b>"
    assert headers.get_list("Link") == ["<a>", "<b>"]
    assert headers.get("missing") is None and headers.get_list("missing") == []


def test_request_headers_are_never_in_its_repr() -> None:
    request = Request("GET", "https://r.test/v2/", [("Authorization", "Bearer sekrit")])
    with_token = request.with_header("authorization", "Bearer other")
    assert with_token.headers == [("authorization", "Bearer other")]
    assert request.headers == [("Authorization", "Bearer sekrit")]  # shared lists untouched
    assert "sekrit" not in repr(request) and "other" not in repr(with_token)


# -- encoded bodies -----------------------------------------------------------------------

HOST = "registry.test"
INDEX = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda b: (gzip.compress(b), "gzip"), id="gzip"),
        pytest.param(lambda b: (zlib.compress(b), "deflate"), id="deflate"),
        pytest.param(lambda b: (zlib.compress(b)[2:-4], "deflate"), id="raw-deflate"),
    ],
)
def test_encoded_manifest_is_decoded_before_hashing(encode: Any) -> None:
    body, encoding = encode(INDEX)
    headers = {"Content-Type": mt.OCI_INDEX, "Content-Encoding": encoding}

    def handler(request: httpx.Request) -> httpx.Response:
        # A streamed body: httpx would decode a whole one itself when building it.
        return httpx.Response(200, headers=headers, content=iter([body]))

    with open_registry(HOST, transport=httpx.MockTransport(handler)) as registry:
        assert registry.get_manifest("team/app", "v1").raw == INDEX
        read = registry.read_blob("team/app", Digest.of(INDEX), limit=10_000)
    assert (read.digest, read.size) == (Digest.of(INDEX), len(INDEX))


def test_compression_bomb_stops_at_the_manifest_limit() -> None:
    bomb = gzip.compress(bytes(16 * 1024 * 1024))  # 16 MiB of zeros in ~16 KiB

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=iter([bomb]))

    with (
        open_registry(HOST, transport=httpx.MockTransport(handler)) as registry,
        pytest.raises(ProtocolError, match="limit"),
    ):
        registry.get_manifest("team/app", "v1")


def test_garbled_gzip_is_a_protocol_error_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, content=iter([b"not gzip"])
        )

    policy, delays = no_sleep_policy()
    with (
        open_registry(HOST, transport=httpx.MockTransport(handler), retries=policy) as registry,
        pytest.raises(ProtocolError, match="gzip"),
    ):
        registry.get_manifest("team/app", "v1")
    assert (len(calls), delays) == (1, [])


def test_gzip_body_cut_inside_its_stream_is_a_protocol_error() -> None:
    cut = gzip.compress(INDEX)[:-12]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=iter([cut]))

    with (
        open_registry(HOST, transport=httpx.MockTransport(handler)) as registry,
        pytest.raises(ProtocolError, match="ends inside"),
    ):
        registry.get_manifest("team/app", "v1")


# -- the default wire on a real registry --------------------------------------------------


def test_keep_alive_wire_answers_and_pools(registry: SandboxRegistry) -> None:
    wire = KeepAliveWire()
    timeouts = Timeouts(connect=5.0, read=5.0)
    try:
        for _ in range(3):
            response = wire.send(Request("GET", f"{registry.url}/v2/", []), timeouts)
            assert response.status == 200
            assert response.headers.get("docker-distribution-api-version") == "registry/2.0"
            while response.read_chunk():
                pass
            response.close()
        assert sum(len(idle) for idle in wire._idle.values()) == 1
    finally:
        wire.close()


# -- proxies from the environment ---------------------------------------------------------


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)  # absolute-form: the proxy is asked for the whole URL
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no FQDN look-up
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


@contextmanager
def _proxy() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    server = _ProxyServer(("127.0.0.1", 0), type("H", (_ProxyHandler,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_proxy_from_the_environment_carries_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with _proxy() as (port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        # A name that resolves nowhere: only the proxy can answer for it.
        with open_registry("http://registry.invalid", insecure=True) as registry:
            registry.ping()
    assert seen == ["http://registry.invalid/v2/"]
