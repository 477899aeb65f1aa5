"""FakeVault: a FAKE of HashiCorp Vault's KV v2 HTTP API, for tests only.

Vault itself cannot be installed where shipsure's tests run, so this small threaded HTTP
server copies exactly the parts the Vault lock backend uses, with Vault's check-and-set
rules:

- POST/PUT /v1/<mount>/data/<path> {"options": {"cas": N}, "data": {...}} writes version
  current+1, but only if N equals the current version (0 when the path has no metadata);
  otherwise 400 "check-and-set parameter did not match the current version".
- GET /v1/<mount>/data/<path>: 200 with data and metadata.version; 404 without data when
  the path does not exist; 404 *with* metadata (data null) when the latest version is
  soft-deleted.
- DELETE /v1/<mount>/data/<path>: soft delete of the latest version. The version count
  stays, so a later cas=0 write fails.
- DELETE /v1/<mount>/metadata/<path>: removes the path and all its versions.
- LIST (or GET ?list=true) /v1/<mount>/metadata/<folder>/: names directly under a folder,
  sub-folders with a trailing "/"; 404 when empty.
- Every request needs the X-Vault-Token header; a wrong one gets 403 "permission denied".

It is not Vault: no policies, leases, namespaces, max_versions or destroy.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

CAS_MISMATCH = "check-and-set parameter did not match the current version"


@dataclass
class _Version:
    data: dict[str, Any]
    created_time: str
    deletion_time: str = ""


@dataclass
class _Secret:
    current_version: int = 0
    versions: dict[int, _Version] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        latest = self.versions[self.current_version]
        return {
            "created_time": latest.created_time,
            "deletion_time": latest.deletion_time,
            "destroyed": False,
            "version": self.current_version,
            "custom_metadata": None,
        }


class FakeVault:
    """A fake KV v2 engine at `url`, mount `mount`, accepting only `token`."""

    def __init__(self, token: str = "test-root-token", mount: str = "secret") -> None:
        self.token = token
        self.mount = mount
        self.secrets: dict[str, _Secret] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeVault:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    # -- the KV v2 rules -----------------------------------------------------------------

    def write(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = body.get("data")
        if not isinstance(data, dict):
            return 400, {"errors": ["no data provided"]}
        options = body.get("options") or {}
        with self.lock:
            secret = self.secrets.get(path)
            current = secret.current_version if secret else 0
            if "cas" in options and int(options["cas"]) != current:
                return 400, {"errors": [CAS_MISMATCH]}
            secret = secret or self.secrets.setdefault(path, _Secret())
            secret.current_version = current + 1
            secret.versions[secret.current_version] = _Version(dict(data), _now())
            meta = secret.metadata()
        return 200, {"data": {k: meta[k] for k in ("created_time", "deletion_time", "version")}}

    def read(self, path: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            secret = self.secrets.get(path)
            if secret is None:
                return 404, {"errors": []}
            latest = secret.versions[secret.current_version]
            meta = secret.metadata()
            if latest.deletion_time:
                return 404, {"data": {"data": None, "metadata": meta}}
            return 200, {"data": {"data": dict(latest.data), "metadata": meta}}

    def soft_delete(self, path: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            secret = self.secrets.get(path)
            if secret is not None:
                secret.versions[secret.current_version].deletion_time = _now()
        return 204, {}

    def delete_metadata(self, path: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.secrets.pop(path, None)
        return 204, {}

    def list(self, folder: str) -> tuple[int, dict[str, Any]]:
        folder = folder if folder.endswith("/") or not folder else folder + "/"
        with self.lock:
            names = set()
            for path in self.secrets:
                if path.startswith(folder):
                    rest = path[len(folder) :]
                    head, slash, _ = rest.partition("/")
                    names.add(head + slash)
        if not names:
            return 404, {"errors": []}
        return 200, {"data": {"keys": sorted(names)}}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _handler_for(vault: FakeVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read assertions, not access logs."""

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def do_LIST(self) -> None:
            self._serve("LIST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body = self._route(method, raw)
            payload = json.dumps(body).encode() if status != 204 else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _route(self, method: str, raw: bytes) -> tuple[int, dict[str, Any]]:
            if self.headers.get("X-Vault-Token") != vault.token:
                return 403, {"errors": ["permission denied"]}
            url = urlsplit(self.path)
            parts = unquote(url.path).split("/", 4)  # "", "v1", mount, kind, path
            if len(parts) < 4 or parts[1] != "v1" or parts[2] != vault.mount:
                return 404, {"errors": [f"no handler for route {url.path!r}"]}
            kind, path = parts[3], parts[4] if len(parts) > 4 else ""
            if method == "GET" and "list=true" in url.query:
                method = "LIST"
            if kind == "data" and path:
                if method == "POST":
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        return 400, {"errors": ["failed to parse JSON input"]}
                    return vault.write(path, body if isinstance(body, dict) else {})
                if method == "GET":
                    return vault.read(path)
                if method == "DELETE":
                    return vault.soft_delete(path)
            if kind == "metadata":
                if method == "LIST":
                    return vault.list(path)
                if method == "DELETE" and path:
                    return vault.delete_metadata(path)
            return 405, {"errors": ["unsupported operation"]}

    return Handler
