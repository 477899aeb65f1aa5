"""A wire over an httpx transport, for what the default wire does not do.

Used for a transport handed to `open_registry` (tests give an `httpx.MockTransport` for
answers a real registry cannot be made to give) and, when a proxy is configured in the
environment, for httpx's own transport, which knows proxies and NO_PROXY. Only this module
imports httpx, and only these two cases import this module.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, cast

import httpcore
import httpx

from shipsure.registry.wire import (
    CHUNK,
    CertificateRefused,
    ConnectFailed,
    Deadline,
    Disconnected,
    Headers,
    Malformed,
    NetworkFailed,
    PieceByPiece,
    Request,
    Timeouts,
    WireError,
    WireTimeout,
    redact,
)

# httpx reports an early disconnect and a garbled answer alike as RemoteProtocolError;
# only its early-disconnect messages mean "the server went away".
_DISCONNECT_HINTS = ("disconnected", "peer closed", "incomplete", "connection reset")
# A HEAD answer that carries a body anyway is read this far, so httpx can reuse the
# connection, and no further.
_MAX_HEAD_DRAIN = 64 * 1024


def wire_error(exc: httpx.TransportError) -> WireError:
    """The wire error for an httpx one, so both wires are retried and reported alike."""
    # A proxy's URL, user-info and all, may be part of httpx's message.
    text = redact(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return WireTimeout(f"timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__  # httpx wraps httpcore wraps ssl
        if isinstance(cause, ssl.SSLCertVerificationError):
            netloc = exc.request.url.netloc.decode("ascii", "replace")
            return CertificateRefused(netloc, cause.verify_message)
        return ConnectFailed(text)
    if isinstance(exc, httpx.RemoteProtocolError):
        if any(hint in text.lower() for hint in _DISCONNECT_HINTS):
            return Disconnected(text)
        return Malformed(f"malformed answer: {text}")
    if isinstance(exc, httpx.NetworkError):
        return NetworkFailed(text)
    if isinstance(exc, (httpx.DecodingError, httpx.LocalProtocolError)):
        return Malformed(f"malformed answer: {text}")
    return WireError(text)  # proxy errors, unsupported protocols and the like


# The deadline of the request this thread is sending or reading (httpx's sync client does
# its network I/O on the calling thread), for the network streams below.
_current = threading.local()


class _DeadlineStream(httpcore.NetworkStream):
    """httpcore's socket stream with every read and write bounded by what is left of the
    current request's `Deadline`: httpx's own timeouts bound one pause only, so a server
    dripping its headers a byte at a time would otherwise never time out."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    @staticmethod
    def _bound(timeout: float | None, error: type[Exception]) -> float | None:
        deadline: Deadline | None = getattr(_current, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline.remaining()
        if left <= 0:
            raise error("the whole request took longer than the timeout")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._bound(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        bounded = _DeadlineStream._bound(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        bounded = _DeadlineStream._bound(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_by_deadlines(client: httpx.Client) -> None:
    """Route the network I/O of `client`'s transports (its own and one per proxy) through
    `_DeadlineBackend`. httpx builds those pools itself and offers no way to hand them a
    network backend, so it is set on each pool that has one (httpcore 1.x); a transport
    without one (a mock) is bounded between body chunks only."""
    mounts = getattr(client, "_mounts", {})
    for transport in [getattr(client, "_transport", None), *mounts.values()]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(
            backend, _DeadlineBackend
        ):
            setattr(pool, "_network_backend", _DeadlineBackend(backend))  # noqa: B010


class HttpxWire:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        _bound_by_deadlines(client)

    @classmethod
    def over(cls, transport: httpx.BaseTransport) -> HttpxWire:
        """Every request to `transport`, whatever the environment's proxies say."""
        return cls(_client(transport=transport, trust_env=False))

    @classmethod
    def with_environment_proxies(cls, context: ssl.SSLContext, max_connections: int) -> HttpxWire:
        """httpx's own transport, routed through the proxies the environment names."""
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        return cls(_client(verify=context, limits=limits, trust_env=True))

    def send(self, request: Request, timeouts: Timeouts) -> HttpxResponse:
        deadline = Deadline(timeouts.total)
        timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect)
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            extensions={"timeout": timeout.as_dict()},
        )
        _current.deadline = deadline
        try:
            answer = self._client.send(outgoing, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            raise wire_error(exc) from None
        except httpx.InvalidURL as exc:
            raise Malformed(f"invalid URL: {redact(str(exc))}") from None
        finally:
            _current.deadline = None
        return HttpxResponse(answer, request, deadline)

    def close(self) -> None:
        self._client.close()


class HttpxResponse(PieceByPiece):
    def __init__(self, answer: httpx.Response, request: Request, deadline: Deadline) -> None:
        self._answer = answer
        self._deadline = deadline
        self._chunks = iter(cast(httpx.SyncByteStream, answer.stream))
        self.request = request
        self.status = answer.status_code
        self.headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers.raw
        )

    def _next_piece(self) -> bytes | None:
        self._deadline.check()  # also where no network stream is ours to bound (mocks)
        _current.deadline = self._deadline
        try:
            piece = next(self._chunks)
        except StopIteration:
            return None
        except httpx.TransportError as exc:
            raise wire_error(exc) from None
        finally:
            _current.deadline = None
        self._deadline.received += len(piece)
        return piece

    def close(self) -> None:
        if self.method == "HEAD" and not self._done:
            received = 0
            while received <= _MAX_HEAD_DRAIN:
                try:
                    chunk = self.read_chunk(CHUNK)
                except WireError:
                    break
                if not chunk:
                    break
                received += len(chunk)
        self._answer.close()


def _client(**options: object) -> httpx.Client:
    client = httpx.Client(follow_redirects=False, **options)  # type: ignore[arg-type]
    # Registries use no cookies, and httpx has no switch to turn its jar off: parsing every
    # answer for Set-Cookie cost about a quarter of the client's own CPU per request.
    setattr(client.cookies, "extract_cookies", _ignore_cookies)  # noqa: B010
    return client


def _ignore_cookies(response: httpx.Response) -> None:
    return None
