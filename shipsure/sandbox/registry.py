"""Start and stop a real distribution registry (`docker-registry`) on a free local port.

The registry runs with filesystem storage in a temporary directory (or a given root),
deletes enabled, upload purging off (so stale-upload faults stay put), and its log in a
file beside the config so a failed start can show why.

Garbage collection on filesystem storage does not need the registry stopped (observed on
2.8.2): `garbage-collect` opens the storage directly, and the running registry serves what
is left on disk from the next request on, so the incident's 404s show at once (no
blob-descriptor cache by default). Only pushes racing the GC are unsafe (it may sweep blobs
of a push in flight), so collect while nothing is pushing. With `blob_cache="inmemory"` the
cache is filled by pushes as well as by reads, and a running registry keeps answering HEAD
200 for blobs whose data is gone until `restart()` (registry-facts §3). Start-up takes a few
tens of milliseconds.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from shipsure.sandbox import SandboxError

REGISTRY_BINARY = Path("/usr/bin/docker-registry")

BlobCache = Literal["inmemory"] | None

# Generous bounds: a start normally takes well under a second, GC of a test registry less.
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 5.0
GC_TIMEOUT_SECONDS = 120.0
_POLL_INTERVAL_SECONDS = 0.01
_LOG_TAIL_BYTES = 2000


def registry_available() -> bool:
    """True when the registry binary is installed (tests skip only when it is not)."""
    return REGISTRY_BINARY.is_file() and os.access(REGISTRY_BINARY, os.X_OK)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _registry_environment() -> dict[str, str]:
    """The caller's environment minus what would change the registry behind our back.

    REGISTRY_* variables override the config file; AWS_CA_BUNDLE makes Debian's build panic
    at start-up (registry-facts §2).
    """
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REGISTRY_") and key != "AWS_CA_BUNDLE"
    }


class SandboxRegistry:
    """A real registry on 127.0.0.1 for as long as the `with` block lasts.

    >>> with SandboxRegistry() as registry:
    ...     print(registry.url)        # http://127.0.0.1:PORT
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        blob_cache: BlobCache = None,
        readonly: bool = False,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        """`extra_config` adds or replaces top-level config sections (e.g. `auth`)."""
        self._given_root = root
        self.blob_cache = blob_cache
        self.readonly = readonly
        self.extra_config = dict(extra_config or {})
        self._workdir: Path | None = None
        self._root: Path | None = None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # Fixed per instance so upload state survives restart().
        self._secret = secrets.token_hex(16)

    # --- where things are ----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise SandboxError("sandbox registry is not started")
        return self._port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def root(self) -> Path:
        """The filesystem storage root (holds `docker/registry/v2/...`)."""
        if self._root is None:
            raise SandboxError("sandbox registry is not started")
        return self._root

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise SandboxError("sandbox registry is not started")
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> SandboxRegistry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the config and storage, start the registry and wait until it answers."""
        if self._process is not None:
            return
        if not registry_available():
            raise SandboxError(f"registry binary {REGISTRY_BINARY} is not installed")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="shipsure-registry-"))
            self._root = self._given_root or self._workdir / "storage"
            self._root.mkdir(parents=True, exist_ok=True)
            self._port = _free_port()
        try:
            self._write_config()
            self._launch()
        except BaseException:
            self.close()
            raise

    def stop(self) -> None:
        """Stop the process by pid (SIGTERM, then SIGKILL); keep storage for a restart."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port: empties the in-memory blob cache."""
        self.stop()
        self._launch()

    def close(self) -> None:
        """Stop the registry and delete the temporary directory (a given root is kept)."""
        try:
            self.stop()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
                self._root = None
                self._port = None

    # --- maintenance -----------------------------------------------------------------

    def garbage_collect(
        self, delete_untagged: bool = False, dry_run: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `docker-registry garbage-collect` against this storage.

        The exit status is returned, not raised: a failing GC is something tests observe
        (e.g. exit 1 when a repository has no `_manifests/tags` folder).
        """
        command = [str(REGISTRY_BINARY), "garbage-collect"]
        if dry_run:
            command.append("--dry-run")
        if delete_untagged:
            command.append("--delete-untagged")
        command.append(str(self.config_path))
        try:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=GC_TIMEOUT_SECONDS,
                env=_registry_environment(),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise SandboxError(
                f"garbage-collect on {self.root} did not finish in {GC_TIMEOUT_SECONDS:.0f} s"
            ) from error

    # --- internals -------------------------------------------------------------------

    def _config(self) -> dict[str, object]:
        storage: dict[str, object] = {
            "filesystem": {"rootdirectory": str(self.root)},
            "delete": {"enabled": True},
            "maintenance": {
                # Purging would remove the stale uploads faults.py plants.
                "uploadpurging": {"enabled": False},
                "readonly": {"enabled": self.readonly},
            },
        }
        if self.blob_cache is not None:
            storage["cache"] = {"blobdescriptor": self.blob_cache}
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": storage,
            "http": {"addr": self.host, "secret": self._secret},
        }
        config.update(self.extra_config)
        return config

    def _write_config(self) -> None:
        # JSON is YAML, and needs no YAML writer.
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._config(), indent=2) + "\n")
        temporary.replace(self.config_path)

    def _launch(self) -> None:
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_registry_environment(),
            # Its own session: a Ctrl-C meant for the test run is not sent twice.
            start_new_session=True,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                self.stop()
                raise SandboxError(
                    f"registry on {self.host} exited with status {process.returncode} at "
                    f"start-up; log tail: {self._log_tail()}"
                )
            if self._answers_v2():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise SandboxError(
                    f"registry on {self.host} did not answer GET /v2/ within "
                    f"{START_TIMEOUT_SECONDS:.0f} s; log tail: {self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_SECONDS)

    def _answers_v2(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            connection.request("GET", "/v2/")
            status = connection.getresponse().status
        except OSError:
            return False
        finally:
            connection.close()
        # With `auth` configured, /v2/ answering its 401 challenge means ready.
        return status == 200 or (status == 401 and "auth" in self.extra_config)

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                return log.read().decode("utf-8", "replace").strip() or "(empty)"
        except OSError:
            return "(no log)"
