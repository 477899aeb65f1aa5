"""Real Prometheus, node-exporter (textfile collector) and Pushgateway on free loopback
ports, for the end-to-end alert test. Each runs in a temporary folder, is waited for until
it answers, and is stopped by pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
PUSHGATEWAY = shutil.which("prometheus-pushgateway")
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(
        self, args: list[str], port: int, ready_path: str, log: Path, ready_on_401: bool = False
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and ready_on_401:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[0]} did not answer: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def start_node_exporter(workdir: Path, textfiles: Path) -> Server:
    assert NODE_EXPORTER is not None
    port = free_port()
    return Server(
        [
            NODE_EXPORTER,
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
        ],
        port,
        "/metrics",
        workdir / "node-exporter.log",
    )


def start_pushgateway(workdir: Path, web_config: Path | None = None) -> Server:
    """`web_config`: the exporter-toolkit web config (e.g. `basic_auth_users`); its
    readiness path then needs the same credentials, so it is checked on /-/healthy's
    401 being anything but a refused connection."""
    assert PUSHGATEWAY is not None
    port = free_port()
    extra = [f"--web.config.file={web_config}"] if web_config else []
    return Server(
        [
            PUSHGATEWAY,
            f"--web.listen-address=127.0.0.1:{port}",
            # Debian's build persists pushed metrics under /var/lib by default.
            f"--persistence.file={workdir / 'pushgateway.data'}",
            *extra,
        ],
        port,
        "/-/ready",
        workdir / "pushgateway.log",
        ready_on_401=web_config is not None,
    )


def start_prometheus(workdir: Path, rules: Path, targets: dict[str, str]) -> Server:
    """Scrapes each `job -> host:port` every second and evaluates `rules` every second."""
    assert PROMETHEUS is not None
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            # The Pushgateway's metrics carry their own job/instance: keep them.
            {"job_name": job, "honor_labels": True, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return Server(
        [
            PROMETHEUS,
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        port,
        "/-/ready",
        workdir / "prometheus.log",
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def wait_for(what: str, check: Any, timeout: float = 90.0) -> Any:
    """Poll `check()` until it returns something truthy; the deadline only guards a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)
