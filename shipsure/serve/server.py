"""serve's HTTP endpoints on the standard library's ThreadingHTTPServer.

The standard library is enough here: the traffic is a registry's notifications and a few
scrapes and page views a minute, each answered from local state in well under a
millisecond of work; the slow work (walking the registry) runs on the watcher's threads.
Connections are capped (`max_connections`; one beyond the cap is answered 503 at once,
without holding up the accept loop), each socket has a timeout, and a body is read
only after its size and the shared secret were checked.

POST /notifications   distribution's envelope or Harbor's webhook; 202 when taken
GET  /metrics         Prometheus exposition (metrics.py)
GET  /healthz         200 while the worker threads run
GET  /readyz          200 when the last complete probe is recent (always, when alive,
                      with no scheduled probe: --probe-interval 0)
GET  /api/findings    the open findings in verify's JSON shape, with first-seen times
GET  /                the status page (page.py); ?q= filters
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shipsure.checks.probe_state import iso
from shipsure.report import json_format
from shipsure.serve import page
from shipsure.serve.events import NotificationError, describe, parse_notification
from shipsure.serve.metrics import CONTENT_TYPE, ServeCollector, render
from shipsure.serve.pushqueue import PushQueue
from shipsure.serve.store import Store
from shipsure.serve.watcher import Watcher

log = logging.getLogger("shipsure.serve.http")

DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 64
SOCKET_TIMEOUT = 30.0
# After refusing a body unread, keep reading (and discarding) it this long before closing,
# so the client gets the answer instead of a connection reset.
LINGER_SECONDS = 2.0
PAGE_TAG_LIMIT = 1000
PAGE_FINDING_LIMIT = 500  # the page stays a few MB at most; /api/findings has them all


@dataclass(frozen=True)
class HttpOptions:
    token: str | None  # None: /notifications is refused (403)
    max_body: int = DEFAULT_MAX_BODY
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    probe_interval: float = 3600.0


class App:
    """What the handlers read: the watcher, its store and queue, and the options."""

    def __init__(
        self,
        watcher: Watcher,
        store: Store,
        queue: PushQueue,
        options: HttpOptions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.watcher = watcher
        self.store = store
        self.queue = queue
        self.options = options
        self.clock = clock
        self.collector = ServeCollector(watcher, store, queue)
        self._token = options.token.encode() if options.token else None

    def authorized(self, header: str | None) -> bool:
        """`Authorization: Bearer <token>` (distribution's endpoint `headers`), or the
        token alone (Harbor's "auth header" is sent verbatim); compared in constant time."""
        if self._token is None or header is None:
            return False
        # http.server decodes header bytes as ISO-8859-1; encoding back that way gives the
        # bytes the registry sent (a UTF-8 token as written in its config).
        given = header.strip().encode("latin-1", "replace")
        bearer = b"Bearer " + self._token
        # Both comparisons always run: the time taken does not say which form was close.
        as_bearer = hmac.compare_digest(given, bearer)
        as_token = hmac.compare_digest(given, self._token)
        return as_bearer or as_token

    def readiness(self) -> tuple[bool, str]:
        if not self.watcher.alive():
            return False, "worker threads stopped"
        interval = self.options.probe_interval
        if interval <= 0:
            return True, "push verification only (no scheduled probe)"
        last = self.store.last_complete_probe()
        if last is None:
            running = " (one is running)" if self.watcher.probe_running else ""
            return False, f"no complete probe yet{running}"
        age = self.clock() - last
        durations = [
            float(p.summary.get("duration_seconds", 0)) for p in self.store.recent_probes(1)
        ]
        window = 2 * interval + (durations[0] if durations else 0.0)
        if age > window:
            return False, f"last complete probe {age:.0f} s ago, older than {window:.0f} s"
        return True, f"last complete probe {age:.0f} s ago"

    def findings_json(self, search: str) -> dict[str, Any]:
        out = []
        for f in self.store.open_findings():
            if not _finding_matches(search, f):
                continue
            out.append(
                {
                    **f.finding,
                    "tags": list(f.tags),
                    "first_seen": iso(f.first_seen),
                    "last_seen": iso(f.last_seen),
                    "first_seen_timestamp": f.first_seen,
                    "seen_by": f.source,
                }
            )
        return {
            "command": "serve",
            "registry": self.watcher.host,
            "generated": iso(self.clock()),
            "findings": out,
        }

    def page_html(self, search: str) -> str:
        findings = self.store.open_findings()
        matching = [f for f in findings if _finding_matches(search, f)]
        shown = matching[:PAGE_FINDING_LIMIT]
        tags, matched = self.store.tag_states(search.strip(), PAGE_TAG_LIMIT)
        ready, reason = self.readiness()
        data = page.PageData(
            registry=self.watcher.host,
            now=self.clock(),
            search=search,
            findings=shown,
            findings_total=len(findings),
            findings_matched=len(matching),
            tags=tags,
            tags_matched=matched,
            tag_counts=self.store.tag_state_counts(),
            pushes=self.store.recent_pushes(50),
            probes=self.store.recent_probes(10),
            probe_running=self.watcher.probe_running,
            probe_interval=self.options.probe_interval,
            queue_pending=len(self.queue),
            dropped=self.queue.counts.dropped,
            ready=ready,
            ready_reason=reason,
        )
        return page.render(data)


def _finding_matches(search: str, f: Any) -> bool:
    doc = f.finding
    return page.matches(
        search, f.repository, f.kind, doc.get("digest"), doc.get("reference"), " ".join(f.tags)
    )


class _Handler(BaseHTTPRequestHandler):
    server_version = "shipsure-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    app: App  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # replaced by the structured access log below (no headers, no query)

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log.debug(
            "request",
            extra={"method": self.command, "path": urlsplit(self.path).path, "status": status},
        )

    def _json(self, status: int, doc: Any, extra: dict[str, str] | None = None) -> None:
        body = json_format.dumps(doc, indent=1).encode()
        self._send(status, body, "application/json", extra)

    def _error(self, status: int, message: str, extra: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, extra)

    # --- GET ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        search = (query.get("q") or [""])[0][:200]
        app = self.app
        if url.path == "/metrics":
            self._send(200, render(app.collector), CONTENT_TYPE)
        elif url.path == "/healthz":
            alive = app.watcher.alive()
            self._send(200 if alive else 503, b"ok\n" if alive else b"stopped\n", "text/plain")
        elif url.path == "/readyz":
            ready, reason = app.readiness()
            self._send(200 if ready else 503, (reason + "\n").encode(), "text/plain")
        elif url.path == "/api/findings":
            self._json(200, app.findings_json(search))
        elif url.path == "/":
            self._send(200, app.page_html(search).encode(), "text/html; charset=utf-8")
        elif url.path == "/notifications":
            self._error(405, "POST notifications here", {"Allow": "POST"})
        else:
            self._error(404, f"no such page: {url.path[:100]}")

    do_HEAD = do_GET

    # --- POST /notifications ------------------------------------------------------------

    def do_POST(self) -> None:
        app = self.app
        path = urlsplit(self.path).path
        if path != "/notifications":
            self._refuse_body(404, f"no such endpoint: {path[:100]}", "not-found")
            return
        if app.options.token is None:
            self._refuse_body(
                403,
                "notifications are off: start serve with --notifications-token-file",
                "disabled",
            )
            return
        if not app.authorized(self.headers.get("Authorization")):
            self._refuse_body(
                401,
                "missing or wrong shared secret (Authorization: Bearer <token>)",
                "unauthorized",
                {"WWW-Authenticate": 'Bearer realm="shipsure notifications"'},
            )
            return
        if self.headers.get("Transfer-Encoding"):
            self._refuse_body(411, "send the body with a Content-Length", "length-required")
            return
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text or "")
        except ValueError:
            self._refuse_body(411, "Content-Length missing or not a number", "length-required")
            return
        if length < 0:
            self._refuse_body(400, "negative Content-Length", "invalid")
            return
        if length > app.options.max_body:
            self._refuse_body(
                413,
                f"body of {length} bytes is larger than the {app.options.max_body} allowed",
                "too-large",
            )
            return
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            app.watcher.counters.notification("incomplete")
            self.close_connection = True
            return
        if len(body) < length:
            app.watcher.counters.notification("incomplete")
            self.close_connection = True
            return
        try:
            notification = parse_notification(self.headers.get("Content-Type"), body)
        except NotificationError as exc:
            app.watcher.counters.notification(f"rejected-{exc.status}")
            log.warning("notification refused", extra={"status": exc.status, "reason": str(exc)})
            self._error(exc.status, str(exc))
            return
        results = {"queued": 0, "coalesced": 0, "dropped": 0}
        for push in notification.pushes:
            results[app.queue.offer(push)] += 1
        with app.watcher.counters.lock:
            app.watcher.counters.events_ignored += notification.ignored
        app.watcher.counters.notification("accepted")
        if results["dropped"]:
            log.warning(
                "push queue full: pushes left to the next probe"
                if app.options.probe_interval > 0
                else "push queue full: pushes not verified (the scheduled probe is off)",
                extra={"dropped": results["dropped"], "pending": len(app.queue)},
            )
            app.watcher.overflowed()
        if notification.pushes:
            log.info(
                "pushes received",
                extra={
                    "source": notification.source,
                    "pushes": describe(notification.pushes),
                    **results,
                },
            )
        self._json(202, {**results, "ignored": notification.ignored})

    def _refuse_body(
        self, status: int, message: str, outcome: str, extra: dict[str, str] | None = None
    ) -> None:
        """Answer without reading the body, then close; discard what the client still
        sends for a moment so it reads the answer rather than a reset."""
        self.app.watcher.counters.notification(outcome)
        self.close_connection = True
        self._error(status, message, {**(extra or {}), "Connection": "close"})
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline = time.monotonic() + LINGER_SECONDS
            while time.monotonic() < deadline and self.rfile.read1(65536):
                pass
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], slots: int) -> None:
        self.slots = threading.BoundedSemaphore(max(1, slots))
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Never wait for a slot here: this is the accept loop, and a wait would leave every
        # later client (a liveness probe, a scrape) and SIGTERM's shutdown behind the held
        # connections until their socket timeouts. A client beyond the limit gets a short
        # 503 and the connection is closed.
        if not self.slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request (reset, timeout) is not serve's error.
        log.debug("connection dropped", exc_info=True)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 22\r\n"
    b"\r\n"
    b"too many connections\r\n"
)


def _refuse_busy(request: socket.socket) -> None:
    """Answer 503 without reading the request; a client that does not take the bytes at
    once gets a closed connection instead (the accept loop does not wait for it)."""
    try:
        request.setblocking(False)
        request.send(BUSY_ANSWER)
    except OSError:
        pass


def make_server(app: App, host: str, port: int) -> ThreadingHTTPServer:
    """Bind `host:port` (port 0: any free port; see `server_address`)."""
    handler = type("Handler", (_Handler,), {"app": app})
    return _Server((host, port), handler, app.options.max_connections)
