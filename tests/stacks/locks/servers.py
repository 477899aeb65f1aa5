"""Start real Redis, etcd and PostgreSQL servers on 127.0.0.1 for tests; stop them by pid."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _need(program: str) -> str:
    found = shutil.which(program) or (
        str(PG_BIN / program) if (PG_BIN / program).exists() else None
    )
    if found is None:
        pytest.fail(f"{program} is not installed; run scripts/setup.sh")
    return found


def _wait_ready(ready: Callable[[], bool], alive: Callable[[], bool], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready():
        if not alive():
            pytest.fail(f"{what} exited during startup:\n{log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready after {START_TIMEOUT_SECONDS:.0f}s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """A throw-away redis-server without persistence (on `port` when given: a second one on
    the same port is the first restarted empty); yields its redis:// URL."""
    program = _need("redis-server")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="shipsure-redis-") as tmp:
        log = Path(tmp) / "redis.log"
        args = [
            program,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(
                lambda: _port_open(port), lambda: process.poll() is None, log, "redis-server"
            )
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)


@contextlib.contextmanager
def etcd_server(ports: tuple[int, int] | None = None) -> Iterator[str]:
    """A throw-away single-member etcd with a fresh data directory (on `ports` (client,
    peer) when given: a second one there is the first restarted empty); yields its client
    URL (http)."""
    program = _need("etcd")
    client, peer = ports or (free_port(), free_port())
    with tempfile.TemporaryDirectory(prefix="shipsure-etcd-") as tmp:
        log = Path(tmp) / "etcd.log"
        url = f"http://127.0.0.1:{client}"
        args = [
            program,
            "--data-dir", f"{tmp}/data",
            "--listen-client-urls", url,
            "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            # Short raft timings let leases as short as 1 s exist (etcd's minimum lease TTL
            # is 1.5 election timeouts, rounded up to whole seconds).
            "--heartbeat-interval", "10",
            "--election-timeout", "100",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

        def ready() -> bool:
            try:
                return (
                    httpx.post(f"{url}/v3/kv/range", json={"key": "AA=="}, timeout=1).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        try:
            _wait_ready(ready, lambda: process.poll() is None, log, "etcd")
            yield url
        finally:
            _stop(process)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster with trust auth on TCP; yields a postgresql:// URL.

    PostgreSQL refuses to run as root, so when the tests run as root the server runs as
    the `postgres` user that Debian's package creates.
    """
    initdb, postgres = _need("initdb"), _need("postgres")
    as_user: dict[str, object] = {}
    tmp = tempfile.mkdtemp(prefix="shipsure-pg-")
    if os.geteuid() == 0:
        as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        shutil.chown(tmp, "postgres", "postgres")
    data, log, port = Path(tmp) / "data", Path(tmp) / "postgres.log", free_port()
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": tmp}
    try:
        subprocess.run(
            [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, env=env, cwd=tmp, timeout=60, **as_user,  # type: ignore[call-overload]
        )  # fmt: skip
        args = [
            postgres, "-D", str(data), "-p", str(port), "-k", tmp,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(  # type: ignore[call-overload]
                args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp, **as_user
            )
        try:
            _wait_ready(lambda: _pg_ready(port), lambda: process.poll() is None, log, "postgres")
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            # SIGQUIT is PostgreSQL's "immediate shutdown": no checkpoint, which a
            # throw-away cluster does not need.
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pg_ready(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2):
            return True
    except psycopg.Error:
        return False
