"""Start and stop a real distribution registry on a free local port: 2.8 or 3.x.

Two flavours, started with the same options (auth via `extra_config`, read-only, delete,
a notifications endpoint, filesystem or S3 storage):
- `"2.8"`: Debian's `docker-registry` package (distribution 2.8.2);
- `"3"`: distribution v3's `registry`, built by scripts/peers.sh into `.tools/bin`.

The registry runs with filesystem storage in a temporary directory (or a given root, or an
S3 bucket), deletes enabled, upload purging off (so stale-upload faults stay put), and its
log in a file beside the config so a failed start can show why.

Garbage collection on filesystem storage does not need the registry stopped (observed on
2.8.2 and v3.1.2): `garbage-collect` opens the storage directly, and the running registry
serves what is left on disk from the next request on, so the incident's 404s show at once
(no blob-descriptor cache by default). Only pushes racing the GC are unsafe (it may sweep blobs
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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from shipsure.sandbox import SandboxError, peers

# Debian's distribution 2.8.2 (package docker-registry).
REGISTRY_BINARY = Path("/usr/bin/docker-registry")

Flavour = Literal["2.8", "3"]
FLAVOURS: tuple[Flavour, ...] = ("2.8", "3")
FLAVOUR_NAMES: dict[Flavour, str] = {
    "2.8": "distribution 2.8.2 (Debian docker-registry)",
    "3": "distribution v3 (registry from scripts/peers.sh)",
}

BlobCache = Literal["inmemory"] | None


@dataclass(frozen=True)
class S3Settings:
    """Where an S3 storage driver keeps the layout: the `storage.s3` config section.

    The keys are written to the config file in the sandbox's temporary folder only.
    """

    endpoint: str  # e.g. http://127.0.0.1:PORT of an S3-compatible server
    bucket: str
    rootdirectory: str = "/"
    region: str = "us-east-1"
    accesskey: str = "test"
    secretkey: str = "test"

    def section(self, flavour: Flavour) -> dict[str, object]:
        """The `storage.s3` section. v3's driver addresses `<bucket>.<endpoint host>`
        unless told `forcepathstyle` (observed on v3.1.2: an IP endpoint fails to
        resolve); 2.8's always uses the path style and has no such key."""
        path_style: dict[str, object] = {"forcepathstyle": True} if flavour == "3" else {}
        return path_style | {
            "accesskey": self.accesskey,
            "secretkey": self.secretkey,
            "region": self.region,
            "regionendpoint": self.endpoint,
            "bucket": self.bucket,
            "rootdirectory": self.rootdirectory,
            "secure": self.endpoint.startswith("https:"),
            "v4auth": True,
        }


# Generous bounds: a start normally takes well under a second, GC of a test registry less.
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 5.0
GC_TIMEOUT_SECONDS = 120.0
_POLL_INTERVAL_SECONDS = 0.01
_LOG_TAIL_BYTES = 2000


def registry_binary(flavour: Flavour = "2.8") -> Path | None:
    """The executable of `flavour`, or None when it is not installed/built."""
    if flavour == "2.8":
        available = REGISTRY_BINARY.is_file() and os.access(REGISTRY_BINARY, os.X_OK)
        return REGISTRY_BINARY if available else None
    return peers.peer_path("registry")


def registry_available(flavour: Flavour = "2.8") -> bool:
    """True when the registry binary is installed (tests skip only when it is not)."""
    return registry_binary(flavour) is not None


def missing_reason(flavour: Flavour = "2.8") -> str:
    """Why `flavour` cannot start: a test's skip reason."""
    if flavour == "2.8":
        return f"needs {REGISTRY_BINARY} (Debian package docker-registry; scripts/setup.sh)"
    return peers.missing_reason("registry") + " (distribution v3)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _registry_environment() -> dict[str, str]:
    """The caller's environment minus what would change the registry behind our back.

    REGISTRY_* variables override the config file; AWS_CA_BUNDLE makes Debian's build panic
    at start-up (registry-facts §2); OTEL_* would steer v3's tracing, which by default
    exports to https://localhost:4318 and logs an error when nothing listens (observed on
    v3.1.2): traces are turned off.
    """
    kept = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REGISTRY_", "OTEL_")) and key != "AWS_CA_BUNDLE"
    }
    return kept | {"OTEL_TRACES_EXPORTER": "none"}


class SandboxRegistry:
    """A real registry on 127.0.0.1 for as long as the `with` block lasts.

    >>> with SandboxRegistry(flavour="3") as registry:
    ...     print(registry.url)        # http://127.0.0.1:PORT
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        flavour: Flavour = "2.8",
        blob_cache: BlobCache = None,
        readonly: bool = False,
        notifications: str | None = None,
        s3: S3Settings | None = None,
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        """`notifications` is the URL events are POSTed to (distribution's notifications
        endpoint); `s3` stores in a bucket instead of a folder (`root` must then be None);
        `extra_config` adds or replaces top-level config sections (e.g. `auth`)."""
        if s3 is not None and root is not None:
            raise SandboxError("a sandbox registry stores in a folder or in S3, not both")
        self._given_root = root
        self.flavour: Flavour = flavour
        self.blob_cache = blob_cache
        self.readonly = readonly
        self.notifications = notifications
        self.s3 = s3
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
        if self.s3 is not None:
            raise SandboxError(f"sandbox registry stores in s3://{self.s3.bucket}: no folder")
        if self._root is None:
            raise SandboxError("sandbox registry is not started")
        return self._root

    @property
    def binary(self) -> Path:
        """The executable this flavour runs (SandboxError when it is absent)."""
        found = registry_binary(self.flavour)
        if found is None:
            raise SandboxError(missing_reason(self.flavour))
        return found

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
        _ = self.binary  # absent: say so before making anything
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="shipsure-registry-"))
            if self.s3 is None:
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
        """Run this flavour's real `garbage-collect` against this storage.

        The exit status is returned, not raised: a failing GC is something tests observe
        (e.g. exit 1 when a repository has no `_manifests/tags` folder).
        """
        command = [str(self.binary), "garbage-collect"]
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
                f"garbage-collect of the storage of {self.host} did not finish in "
                f"{GC_TIMEOUT_SECONDS:.0f} s"
            ) from error

    # --- internals -------------------------------------------------------------------

    def _config(self) -> dict[str, object]:
        driver: dict[str, object] = (
            {"s3": self.s3.section(self.flavour)}
            if self.s3 is not None
            else {"filesystem": {"rootdirectory": str(self.root)}}
        )
        storage: dict[str, object] = {
            **driver,
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
        if self.notifications is not None:
            # Short timeouts and backoff: a sink that went away must not stall pushes.
            endpoint = {
                "name": "sandbox",
                "url": self.notifications,
                "timeout": "2s",
                "threshold": 3,
                "backoff": "1s",
            }
            config["notifications"] = {"endpoints": [endpoint]}
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
            [str(self.binary), "serve", str(self.config_path)],
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
