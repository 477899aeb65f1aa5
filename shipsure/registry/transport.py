"""The default wire: the standard library's `http.client` keep-alive connections.

Why: a whole-registry probe sends hundreds of requests a second to a registry that shares
the machine's cores with us, so every CPU cycle the client spends is taken from the server
(registry-facts §5). `http.client` spends a fraction of httpx's CPU per request and costs
nothing to import; `bench/client.py` measures both side by side.

HTTP/1.1 only, one pool of idle connections per scheme/host/port, bounded in size. A request
on a pooled connection that the server closed meanwhile is sent once more on a fresh one (a
keep-alive race, not an answer); anything else surfaces as a `wire` error, and the client's
retries and error mapping take it from there.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipsure.registry.wire import (
    CHUNK,
    DEFAULT_PORTS,
    AnswerTo,
    CertificateRefused,
    ConnectFailed,
    Deadline,
    Disconnected,
    Headers,
    Malformed,
    NetworkFailed,
    Request,
    Timeouts,
    WireError,
    WireTimeout,
)

# http.client raises these when a kept-alive connection was closed by the server before
# (or while) we reused it.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
_CUT_SHORT = "server closed the connection before the body's end"

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

_Key = tuple[str, str, int]
_Origin = tuple[_Key, str]  # pool key, Host header


class KeepAliveWire:
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
        self._origins: dict[str, _Origin] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl_context is None:
                source = self._ssl_source
                self._ssl_context = source if isinstance(source, ssl.SSLContext) else source()
            return self._ssl_context

    def send(self, request: Request, timeouts: Timeouts) -> KeepAliveResponse:
        deadline = Deadline(timeouts.total)
        url = request.url
        scheme, _, rest = url.partition("://")
        slash = rest.find("/")
        netloc, target = (rest[:slash], rest[slash:]) if slash >= 0 else (rest, "/")
        key, host_header = self._origins.get(scheme + netloc) or self._origin(scheme, netloc)
        body = request.body
        for attempt in (1, 2):
            connection, reused = self._checkout(key, timeouts, deadline)
            try:
                connection.putrequest(
                    request.method, target, skip_host=True, skip_accept_encoding=True
                )
                connection.putheader("Host", host_header)
                for name, value in request.headers:
                    connection.putheader(name, value)
                if body is not None:
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                answer = connection.getresponse()
            except _STALE as exc:
                connection.close()
                if reused and attempt == 1:
                    continue
                raise Disconnected(
                    f"server disconnected without sending a response ({type(exc).__name__})"
                ) from None
            except TimeoutError as exc:
                connection.close()
                raise WireTimeout(f"timed out waiting for the answer ({exc})") from None
            except http.client.HTTPException as exc:
                connection.close()
                raise Malformed(f"malformed answer: {type(exc).__name__}") from None
            except ValueError as exc:  # a header or URL that http.client will not send
                connection.close()
                # Its message may quote a header value, credentials included: name it only.
                raise Malformed(f"cannot send the request ({type(exc).__name__})") from None
            except OSError as exc:
                connection.close()
                raise NetworkFailed(f"network error: {exc}") from None
            return KeepAliveResponse(self, key, connection, answer, request)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = self._idle, {}
        for connections in pools.values():
            for connection in connections:
                connection.close()

    # -- the pool -------------------------------------------------------------------------

    def _origin(self, scheme: str, netloc: str) -> _Origin:
        default = DEFAULT_PORTS.get(scheme)
        if default is None:
            raise WireError(f"unsupported URL scheme {scheme!r}")
        host, port = netloc, default
        head, sep, tail = netloc.rpartition(":")
        if sep and tail.isdigit():
            host, port = head, int(tail)
        origin = ((scheme, host.strip("[]"), port), netloc)
        with self._lock:
            self._origins[scheme + netloc] = origin
        return origin

    def _checkout(
        self, key: _Key, timeouts: Timeouts, deadline: Deadline
    ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            connection = idle.pop() if idle else None
        if connection is not None:
            if isinstance(connection.sock, _DeadlineSocket):
                connection.sock.start(deadline, timeouts.read)
            return connection, True
        scheme, host, port = key
        timeout = min(timeouts.connect, deadline.check())
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._tls()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise WireTimeout(f"timed out connecting to {host}:{port}") from None
        except ssl.SSLCertVerificationError as exc:
            connection.close()
            raise CertificateRefused(f"{host}:{port}", exc.verify_message) from None
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise ConnectFailed(f"{host}:{port}: {exc}") from None
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            bounded = _DeadlineSocket(connection.sock)
            bounded.start(deadline, timeouts.read)
            connection.sock = bounded
        return connection, False

    def _checkin(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(connection)
                    return
        connection.close()


_TIMEOUT_SLACK = 0.25  # seconds


class _DeadlineSocket:
    """A connection's socket whose every send and receive waits at most what is left of
    the current request's `Deadline` (and at most the read timeout).

    Why: a socket timeout bounds one pause only, so a server sending its headers or body
    one byte every few seconds never trips it. `http.client` reads the answer through
    `makefile()`, so wrapping the socket reaches every read it makes, headers included.
    """

    __slots__ = ("_closing", "_deadline", "_pause", "_readers", "_sock", "_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._deadline = Deadline(float("inf"))
        self._pause = float("inf")
        self._readers = 0
        self._closing = False
        self._timeout = sock.gettimeout()

    def start(self, deadline: Deadline, pause: float) -> None:
        """Bound the next request's reads and writes by `deadline`."""
        self._deadline = deadline
        self._pause = pause

    def _arm(self) -> None:
        left = self._deadline.remaining()
        if left <= 0:
            # What a socket timeout raises: the wire maps it to WireTimeout.
            raise TimeoutError("the whole request took longer than the timeout")
        wanted = left if left < self._pause else self._pause
        current = self._timeout
        # settimeout is a system call: change it only when it is off by more than the
        # slack, which happens about once per connection while requests end well within
        # their time (the deadline may be overrun by at most the slack).
        if current is None or abs(current - wanted) > _TIMEOUT_SLACK:
            self._sock.settimeout(wanted)
            self._timeout = wanted

    def sendall(self, data: ReadableBuffer) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: WriteableBuffer) -> int:
        self._arm()
        received = self._sock.recv_into(buffer)
        self._deadline.received += received
        return received

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def close(self) -> None:
        # As socket.close() does with files from makefile(): http.client closes the
        # connection as soon as an answer says "Connection: close", then reads its body.
        self._closing = True
        if not self._readers:
            self._sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closing and not self._readers:
            self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock._reader_closed()
        super().close()


class KeepAliveResponse(AnswerTo):
    """The answer, its body read as it arrives; the connection goes back to the pool only
    when the body was read to its end and the server did not ask to close."""

    __slots__ = ("_answer", "_complete", "_connection", "_headers", "_key", "_wire", "request")

    def __init__(
        self,
        wire: KeepAliveWire,
        key: _Key,
        connection: http.client.HTTPConnection,
        answer: http.client.HTTPResponse,
        request: Request,
    ) -> None:
        self._wire = wire
        self._key = key
        self._connection: http.client.HTTPConnection | None = connection
        self._answer = answer
        self._headers: Headers | None = None
        self.request = request
        # A HEAD answer has no body (http.client knows), so it is complete at once.
        self._complete = request.method == "HEAD"

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._answer.getheaders())
        return self._headers

    def read_chunk(self, limit: int = CHUNK) -> bytes:
        if self._complete:
            return b""
        answer = self._answer
        try:
            chunk = answer.read1(limit)
        except http.client.IncompleteRead:
            raise Disconnected(_CUT_SHORT) from None
        except TimeoutError:
            raise WireTimeout("timed out reading the body") from None
        except (http.client.HTTPException, ValueError) as exc:
            raise Malformed(f"malformed body: {type(exc).__name__}") from None
        except OSError as exc:
            raise NetworkFailed(f"network error: {exc}") from None
        if not chunk:
            if answer.length:
                # http.client ends a Content-Length body cut short silently.
                raise Disconnected(_CUT_SHORT)
            self._complete = True
        return chunk

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        answer = self._answer
        reusable = self._complete and not answer.will_close
        # Closing the answer closes only its file object (a HEAD leaves it open even when
        # read to the end); the connection stays usable for the next request.
        answer.close()
        if reusable:
            self._wire._checkin(self._key, connection)
        else:
            connection.close()
