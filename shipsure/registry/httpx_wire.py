"""A wire over an httpx transport, for what the default wire does not do.

Used for a transport handed to `open_registry` (tests give an `httpx.MockTransport` for
answers a real registry cannot be made to give) and, when a proxy is configured in the
environment, for httpx's own transport, which knows proxies and NO_PROXY. Only this module
imports httpx, and only these two cases import this module.
"""

from __future__ import annotations

import ssl
from typing import cast

import httpx

from shipsure.registry.wire import (
    CHUNK,
    ConnectFailed,
    Disconnected,
    Headers,
    Malformed,
    NetworkFailed,
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


class HttpxWire:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client

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
        timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect)
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            extensions={"timeout": timeout.as_dict()},
        )
        try:
            answer = self._client.send(outgoing, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            raise wire_error(exc) from None
        except httpx.InvalidURL as exc:
            raise Malformed(f"invalid URL: {redact(str(exc))}") from None
        return HttpxResponse(answer, request)

    def close(self) -> None:
        self._client.close()


class HttpxResponse:
    def __init__(self, answer: httpx.Response, request: Request) -> None:
        self._answer = answer
        self._chunks = iter(cast(httpx.SyncByteStream, answer.stream))
        self._buffer = b""
        self._done = False
        self.request = request
        self.status = answer.status_code
        self.headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers.raw
        )

    @property
    def url(self) -> str:
        return self.request.url

    @property
    def method(self) -> str:
        return self.request.method

    def read_chunk(self, limit: int = CHUNK) -> bytes:
        while not self._buffer:
            if self._done:
                return b""
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                self._done = True
            except httpx.TransportError as exc:
                raise wire_error(exc) from None
        chunk, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return chunk

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
