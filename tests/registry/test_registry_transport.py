"""The http.client transport on real sockets: reuse, stale connections, cut bodies, TLS."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.registry.interface import ProtocolError, UnavailableError

from .conftest import no_sleep_policy

DIGEST = Digest.of(b"blob")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int]
    close_after_each = False

    def setup(self) -> None:
        super().setup()
        self.connections.append(self.client_address[1])

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.send_header("Docker-Content-Digest", str(DIGEST))
        self.end_headers()
        # Close without saying so: the client's pooled connection goes stale.
        self.close_connection = self.close_after_each

    def do_GET(self) -> None:
        self.do_HEAD()
        self.wfile.write(b"blob")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can take a second here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


@contextmanager
def http_server(
    close_after_each: bool = False, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[int, list[int]]]:
    connections: list[int] = []
    handler = type(
        "Handler",
        (_Handler,),
        {"connections": connections, "close_after_each": close_after_each},
    )
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], connections
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def raw_server(answer: Callable[[bytes], bytes]) -> Iterator[int]:
    """Answer every connection's first request with raw bytes, then close it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                request = connection.recv(65536)
                connection.sendall(answer(request))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_connections_are_kept_alive_and_reused() -> None:
    with http_server() as (port, connections), open_registry(f"127.0.0.1:{port}") as r:
        for _ in range(20):
            assert r.head_blob("team/app", DIGEST).digest == str(DIGEST)
            assert r.read_blob("team/app", DIGEST, limit=10).digest == DIGEST
    assert len(connections) == 1


def test_a_connection_the_server_closed_is_replaced_without_a_retry() -> None:
    policy, delays = no_sleep_policy()
    with (
        http_server(close_after_each=True) as (port, connections),
        open_registry(f"127.0.0.1:{port}", retries=policy) as r,
    ):
        for _ in range(5):
            r.head_blob("team/app", DIGEST)
    assert delays == []  # the transport resent on a fresh connection; no backoff
    assert len(connections) == 5


def test_body_cut_short_by_the_server() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n"
    policy, delays = no_sleep_policy(retries=2)
    with (
        raw_server(lambda request: head + b"x" * 50) as port,
        open_registry(f"127.0.0.1:{port}", retries=policy) as r,
    ):
        # A blob read reports what arrived: the caller sees 50 of 100 bytes.
        read = r.read_blob("team/app", DIGEST, limit=1000)
        assert (read.size, read.digest) == (50, Digest.of(b"x" * 50))
        with pytest.raises(UnavailableError, match="closed early"):
            r.get_manifest("team/app", "v1")
    assert len(delays) == 2


def test_garbled_status_line_is_a_protocol_error_not_retried() -> None:
    policy, delays = no_sleep_policy()
    with (
        raw_server(lambda request: b"NOT HTTP AT ALL\r\n\r\n") as port,
        open_registry(f"127.0.0.1:{port}", retries=policy) as r,
        pytest.raises(ProtocolError, match="malformed"),
    ):
        r.head_blob("team/app", DIGEST)
    assert delays == []


# -- TLS ----------------------------------------------------------------------------------


def _certificates(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipsure test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return ca_file, context


def test_tls_is_verified_against_the_ca_file(tmp_path: Path) -> None:
    ca_file, server_tls = _certificates(tmp_path)
    policy, _ = no_sleep_policy(retries=0)
    with http_server(tls=server_tls) as (port, _):
        host = f"https://127.0.0.1:{port}"
        with open_registry(host, ca_file=str(ca_file)) as trusted:
            assert trusted.head_blob("team/app", DIGEST).size == 4
        with (
            open_registry(host, retries=policy) as untrusted,
            pytest.raises(UnavailableError, match=r"TLS certificate not trusted .*--ca-file"),
        ):
            untrusted.ping()
        with open_registry(host, insecure=True) as insecure:
            assert insecure.head_blob("team/app", DIGEST).size == 4
