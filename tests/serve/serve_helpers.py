"""Helpers for `shipsure serve` tests: a real `shipsure serve` process on a free port,
the registry config that points notifications at it, polling with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

TOKEN = "serve-test-token-6f1c"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def notifications_config(port: int, token: str = TOKEN) -> dict[str, Any]:
    """The registry's `notifications` section from deploy/registry/notifications.yml, with
    the URL of serve on loopback `port` and `token`: the tests run what deploy/ ships."""
    doc = yaml.safe_load((ROOT / "deploy" / "registry" / "notifications.yml").read_text())
    section: dict[str, Any] = doc["notifications"]
    (endpoint,) = section["endpoints"]
    endpoint["url"] = f"http://127.0.0.1:{port}/notifications"
    endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
    # Retry a serve that is still starting soon, rather than after deploy/'s 5 s.
    endpoint["backoff"] = "1s"
    return section


def wait_until(
    condition: Callable[[], Any], deadline_seconds: float = 30.0, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` at the deadline
    (a bound on a hang, not a timed assertion)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {deadline_seconds:.0f} s")
        time.sleep(0.1)


@dataclass
class ServeProcess:
    """`python -m shipsure serve` in a process of its own."""

    registry: str
    port: int
    state: Path
    workdir: Path
    extra: list[str] = field(default_factory=list)
    stdin_text: str | None = None  # e.g. the registry password for --password-stdin
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        token_file = self.workdir / "token"
        token_file.write_text(TOKEN + "\n")
        self.log_path = self.workdir / f"serve-{int(time.time() * 1000)}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shipsure",
                    "serve",
                    self.registry,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--state",
                    str(self.state),
                    "--notifications-token-file",
                    str(token_file),
                    "--log-format",
                    "json",
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL if self.stdin_text is None else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
            if self.stdin_text is not None:
                assert self.process.stdin is not None
                self.process.stdin.write(self.stdin_text.encode())
                self.process.stdin.close()

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"serve exited {self.process.returncode}: {self.log()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "serve to answer /healthz")

    def stop(self) -> int | None:
        """SIGTERM by pid, then SIGKILL after a bound; returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)

    def metrics(self) -> str:
        return self.get("/metrics").text

    def findings(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/api/findings").json()["findings"]
        return found
