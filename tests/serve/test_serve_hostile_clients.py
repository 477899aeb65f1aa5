"""serve's HTTP side against clients that hold connections open or send what no registry
sends: the accept loop never blocks, SIGTERM still stops serve, the secret is compared as
the bytes the registry sent."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx

from tests.serve.serve_helpers import ServeProcess, free_port

# More idle connections than serve handles at once (server.DEFAULT_MAX_CONNECTIONS is 64).
FLOOD = 80


def _serve(tmp_path: Path, *extra: str) -> ServeProcess:
    serve = ServeProcess(
        registry="127.0.0.1:1",
        port=free_port(),
        state=tmp_path / "serve.sqlite",
        workdir=tmp_path,
        extra=["--probe-interval", "0", *extra],
    )
    serve.start()
    return serve


def _flood(port: int) -> list[socket.socket]:
    """Up to FLOOD connections that send nothing, one after another. Once serve stops
    accepting, its listen backlog fills and a connect waits: stop there (the flood has
    done what it can)."""
    held = []
    for _ in range(FLOOD):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    return held


def test_idle_connections_beyond_the_limit_do_not_stop_answers_or_sigterm(
    tmp_path: Path,
) -> None:
    serve = _serve(tmp_path)
    held = _flood(serve.port)
    try:
        assert len(held) > 64, "the flood did not reach the connection limit"
        # Answered (503 "busy" is fine) instead of waiting behind the held connections.
        try:
            answer = httpx.get(f"{serve.url}/healthz", timeout=10)
        except httpx.TimeoutException:
            raise AssertionError("serve's accept loop is blocked by idle connections") from None
        assert answer.status_code in (200, 503)
        if answer.status_code == 503:
            assert answer.headers.get("Retry-After")
        process = serve.process
        assert process is not None
        process.terminate()
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM did not stop serve while connections were held") from None
        assert code == 0
    finally:
        for sock in held:
            sock.close()
        serve.stop()


def test_a_utf8_shared_secret_is_accepted_as_the_registry_sends_it(tmp_path: Path) -> None:
    """read_token takes any UTF-8 token; the registry sends the header's bytes as written
    in its config, so serve must compare those bytes, not a re-encoding of them."""
    token = "clé-secrète-✓"
    token_file = tmp_path / "utf8-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    serve = _serve(tmp_path, "--notifications-token-file", str(token_file))
    try:
        body = b'{"events": []}'
        header = b"Bearer " + token.encode("utf-8")
        with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
            sock.sendall(
                b"POST /notifications HTTP/1.1\r\nHost: serve\r\n"
                b"Content-Type: application/vnd.docker.distribution.events.v1+json\r\n"
                b"Authorization: " + header + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n" + body
            )
            answer = sock.makefile("rb").readline()
        assert answer.split()[1] == b"202", answer
        wrong = httpx.post(
            f"{serve.url}/notifications",
            content=body,
            headers={"Authorization": b"Bearer " + "clé-secrète-x".encode()},
            timeout=10,
        )
        assert wrong.status_code == 401
    finally:
        serve.stop()
