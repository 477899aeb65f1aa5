"""An httpx transport over the standard library's `http.client` keep-alive connections.

Why: a whole-registry probe sends hundreds of requests a second to a registry that shares
the machine's cores with us, so every CPU cycle the client spends is taken from the server
(registry-facts §5). httpx's own transport (httpcore + h11) spends about three times the CPU
of `http.client` per request; `bench/client.py` measures both side by side. Everything above
the transport (the auth flow, redirects, retries, capped bodies) stays httpx, and tests still
hand in an `httpx.MockTransport` instead.

HTTP/1.1 only, one pool of idle connections per scheme/host/port, bounded in size. A request
on a pooled connection that the server closed meanwhile is sent once more on a fresh one (a
keep-alive race, not an answer); anything else surfaces as the matching httpx error, so the
client's retry and error mapping treat both transports alike.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
# http.client raises these when a kept-alive connection was closed by the server before
# (or while) we reused it.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

_Key = tuple[str, str, int]


class KeepAliveTransport(httpx.BaseTransport):
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        max_idle: int = 16,
    ) -> None:
        # A context costs ~50 ms to build (it loads the system's CA bundle): a plain-HTTP
        # registry never needs one, so a factory is only called on the first HTTPS connect.
        self._ssl_source = ssl_context or ssl.create_default_context
        self._ssl_context: ssl.SSLContext | None = None
        self._max_idle = max_idle
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl_context is None:
                source = self._ssl_source
                self._ssl_context = source if isinstance(source, ssl.SSLContext) else source()
            return self._ssl_context

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        key = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.read() or None
        target = url.raw_path.decode("ascii")
        headers = request.headers.raw
        for attempt in (1, 2):
            connection, reused = self._checkout(key, timeouts)
            try:
                connection.putrequest(
                    request.method, target, skip_host=True, skip_accept_encoding=True
                )
                for name, value in headers:
                    connection.putheader(name, value)
                connection.endheaders(body)
                response = connection.getresponse()
            except _STALE as exc:
                connection.close()
                if reused and attempt == 1:
                    continue
                raise httpx.RemoteProtocolError(
                    f"server disconnected without sending a response ({type(exc).__name__})",
                    request=request,
                ) from None
            except TimeoutError:
                connection.close()
                raise httpx.ReadTimeout(
                    "timed out waiting for the answer", request=request
                ) from None
            except http.client.HTTPException as exc:
                connection.close()
                raise httpx.RemoteProtocolError(
                    f"malformed answer: {type(exc).__name__}", request=request
                ) from None
            except OSError as exc:
                connection.close()
                raise httpx.ReadError(f"network error: {exc}", request=request) from None
            return httpx.Response(
                response.status,
                headers=response.getheaders(),
                stream=_ResponseStream(self, key, connection, response, request),
                extensions={
                    "http_version": b"HTTP/1.1",
                    "reason_phrase": response.reason.encode("latin-1", "replace"),
                },
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, {}
        for connections in pools.values():
            for connection in connections:
                connection.close()

    # -- the pool -------------------------------------------------------------------------

    def _checkout(
        self, key: _Key, timeouts: dict[str, Any]
    ) -> tuple[http.client.HTTPConnection, bool]:
        read_timeout = timeouts.get("read")
        with self._lock:
            idle = self._idle.get(key)
            connection = idle.pop() if idle else None
        if connection is not None:
            if connection.sock is not None:
                connection.sock.settimeout(read_timeout)
            return connection, True
        scheme, host, port = key
        connect_timeout = timeouts.get("connect")
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._tls()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise httpx.ConnectError(f"{host}:{port}: {exc}") from None
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def _checkin(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(connection)
                    return
        connection.close()


class _ResponseStream(httpx.SyncByteStream):
    """The body, read as it arrives; the connection goes back to the pool only when the
    body was read to its end and the server did not ask to close."""

    def __init__(
        self,
        transport: KeepAliveTransport,
        key: _Key,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        request: httpx.Request,
    ) -> None:
        self._transport = transport
        self._key = key
        self._connection: http.client.HTTPConnection | None = connection
        self._response = response
        self._request = request
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        while True:
            try:
                chunk = response.read1(CHUNK)
            except http.client.IncompleteRead:
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body",
                    request=self._request,
                ) from None
            except TimeoutError:
                raise httpx.ReadTimeout(
                    "timed out reading the body", request=self._request
                ) from None
            except (http.client.HTTPException, ValueError) as exc:
                raise httpx.RemoteProtocolError(
                    f"malformed body: {type(exc).__name__}", request=self._request
                ) from None
            except OSError as exc:
                raise httpx.ReadError(f"network error: {exc}", request=self._request) from None
            if not chunk:
                if response.length:
                    # http.client ends a Content-Length body cut short silently.
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body",
                        request=self._request,
                    )
                self._complete = True
                return
            yield chunk

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        response = self._response
        reusable = self._complete and not response.will_close
        # Closing the response closes only its file object (a HEAD leaves it open even when
        # read to the end); the connection stays usable for the next request.
        response.close()
        if reusable:
            self._transport._checkin(self._key, connection)
        else:
            connection.close()
