"""The seam under the registry client: send one HTTP request, get one streamed answer.

`HttpRegistry` and the auth flow speak only this: a `Request` (method, absolute URL, header
list, optional body) goes to a `Wire`, which answers a `Response` (status, headers, the
URL it answered for, a bounded streaming read, `close()`), or raises one of the errors
below. Redirects, retries, auth and every limit live above it.

Two wires exist: `transport.KeepAliveWire`, the default, on the standard library's
`http.client` keep-alive connections; and `httpx_wire.HttpxWire`, over any httpx transport
(tests' `httpx.MockTransport`, and httpx's own transport when a proxy is configured).
The default path never imports httpx: its import alone costs more than the standard
modules we need anyway, and its request machinery doubles the client's CPU per request
(`bench/client.py`), which a walk pays on every blob.

URLs crossing the seam are absolute and normalized by `normalize_url` (lower-case host,
no default port, no fragment, unsafe characters percent-encoded), so comparing origins is
comparing strings.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol
from urllib.parse import quote, urljoin, urlsplit

CHUNK = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 3986 characters that may stay as they are in a path or query (and "%", so that
# escapes already present are kept rather than escaped twice).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


# -- errors -------------------------------------------------------------------------------


class WireError(Exception):
    """Base: the request could not be completed (a proxy refused it, and the like)."""


class ConnectFailed(WireError):
    """No connection: refused, unreachable, name not found, TLS handshake failed."""


class CertificateRefused(WireError):
    """The server's TLS certificate did not verify. Not retried: asking again cannot make
    it trusted, and the fix (--ca-file, --insecure) is the user's."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(
            f"{where}: TLS certificate not trusted ({reason}); add its CA with "
            "--ca-file PEM, or skip verification with --insecure"
        )


class WireTimeout(WireError):
    """Connecting, or the whole request (status line, headers, body), took longer than
    the timeout allows (see `Timeouts`)."""


class NetworkFailed(WireError):
    """The connection broke while sending or reading (reset, broken pipe)."""


class Disconnected(WireError):
    """The server closed the connection before the answer, or inside its body, ended."""


class Malformed(WireError):
    """The answer is not HTTP we can read: garbled status line or headers, bad encoding."""


class InvalidURL(ValueError):
    """A URL we will not send a request to."""


# -- requests and answers -----------------------------------------------------------------


# A body may take longer than `Timeouts.total` by one second per MiB received: a big layer
# arriving at any useful speed is never cut, a drip of a byte every few seconds is.
ALLOWANCE_BYTES_PER_SECOND = 1024 * 1024


class Timeouts(NamedTuple):
    """Seconds. `total` bounds each whole request: connecting, sending, the status line,
    the headers and the body, plus one second per MiB of body received (so only a body
    that keeps arriving faster than 1 MiB/s may outlast it). `connect` bounds connecting
    alone; `read` any single pause (never longer than what is left of `total`)."""

    connect: float
    read: float
    total: float = float("inf")


class Deadline:
    """The end of one request's time: `Timeouts.total` after it started, pushed back by
    `ALLOWANCE_BYTES_PER_SECOND` for every byte received. Not thread-safe: one request."""

    __slots__ = ("_end", "received")

    def __init__(self, total: float, start: float | None = None) -> None:
        self._end = (time.monotonic() if start is None else start) + total
        self.received = 0

    def remaining(self) -> float:
        """Seconds left (<= 0: the request is out of time)."""
        return self._end + self.received / ALLOWANCE_BYTES_PER_SECOND - time.monotonic()

    def check(self) -> float:
        """Seconds left; raises `WireTimeout` when none are."""
        left = self.remaining()
        if left <= 0:
            raise WireTimeout("the request took longer than the timeout allows")
        return left


class Request:
    """One request as it goes on the wire. `headers` may be shared: never mutate it."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body

    def with_header(self, name: str, value: str) -> Request:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return Request(self.method, self.url, [*kept, (name, value)], self.body)

    def __repr__(self) -> str:
        # Headers stay out: they may carry credentials.
        return f"Request({self.method!r}, {self.url!r})"


class Headers:
    """Answer headers: case-insensitive, several values per name.

    `get` joins repeated values with ", " as HTTP allows for list-valued fields (and as
    httpx did), so a doubled Content-Length reads as invalid rather than as its first copy.
    """

    __slots__ = ("_by_name", "_items")

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)
        self._by_name: dict[str, list[str]] | None = None

    def _index(self) -> dict[str, list[str]]:
        if self._by_name is None:
            index: dict[str, list[str]] = {}
            for name, value in self._items:
                index.setdefault(name.lower(), []).append(value)
            self._by_name = index
        return self._by_name

    def get(self, name: str) -> str | None:
        values = self._index().get(name.lower())
        if not values:
            return None
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_list(self, name: str) -> list[str]:
        return list(self._index().get(name.lower(), ()))


class Response(Protocol):
    """An answer whose body has not been read yet. Always `close()` it."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def url(self) -> str:
        """The URL this answered (redirects are not followed below the seam)."""
        ...

    @property
    def method(self) -> str: ...

    def read_chunk(self, limit: int = CHUNK) -> bytes:
        """The next at most `limit` bytes of the raw body as they arrive; b"" at its end.
        A body cut short of its Content-Length raises `Disconnected`."""
        ...

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end."""
        ...


class Wire(Protocol):
    def send(self, request: Request, timeouts: Timeouts) -> Response: ...

    def close(self) -> None: ...


class AnswerTo:
    """What a response knows of its request: the URL it answered and the method."""

    __slots__ = ()
    request: Request

    @property
    def url(self) -> str:
        return self.request.url

    @property
    def method(self) -> str:
        return self.request.method


class PieceByPiece(AnswerTo):
    """A response whose body arrives in pieces of any size (httpx's chunks, a mock's),
    handed out at most `limit` bytes at a time. `_next_piece` gives the next piece, None
    at the body's end."""

    _buffer = b""
    _done = False

    def _next_piece(self) -> bytes | None:
        raise NotImplementedError

    def read_chunk(self, limit: int = CHUNK) -> bytes:
        while not self._buffer:
            if self._done:
                return b""
            piece = self._next_piece()
            if piece is None:
                self._done = True
                return b""
            self._buffer = piece
        chunk, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return chunk


def iter_raw(response: Response) -> Iterator[bytes]:
    while chunk := response.read_chunk(CHUNK):
        yield chunk


def iter_decoded(response: Response) -> Iterator[bytes]:
    """The body with its Content-Encoding undone (gzip, deflate), in bounded pieces.

    We ask for `identity`, but a server or proxy may compress anyway; the bytes a digest
    covers are the decoded ones. Each piece is at most CHUNK bytes, so a compression bomb
    costs only what the caller chooses to read. Unknown encodings pass through as they are.
    """
    encoding = response.headers.get("content-encoding")
    if not encoding:
        yield from iter_raw(response)
        return
    names = [n.strip().lower() for n in encoding.split(",")]
    layers = [n for n in reversed(names) if n in ("gzip", "deflate")]
    chunks: Iterator[bytes] = iter_raw(response)
    for name in layers:
        chunks = _inflate(chunks, name)
    yield from chunks


def read_capped(response: Response, cap: int) -> tuple[bytes, bool]:
    """At most `cap` + 1 bytes of the decoded body, and whether it went past `cap`.

    The one bounded read of a body held in memory (manifests, listings, error bodies,
    token answers): an endless body or a compression bomb costs at most `cap` + CHUNK.
    The wire's deadline bounds how long it may take.
    """
    return capped(iter_decoded(response), cap)


def capped(chunks: Iterable[bytes], cap: int) -> tuple[bytes, bool]:
    """At most `cap` + 1 bytes of `chunks` (read no further), and whether they went past
    `cap`."""
    kept: list[bytes] = []
    total = 0
    for chunk in chunks:
        kept.append(chunk)
        total += len(chunk)
        if total > cap:
            break
    body = b"".join(kept)
    return body[: cap + 1], total > cap


def _inflate(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    # gzip: the gzip header only; deflate: zlib-wrapped, or raw as some servers send it.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
    first = True
    try:
        for data in chunks:
            while data:
                try:
                    out = inflater.decompress(data, CHUNK)
                except zlib.error:
                    if not (first and encoding == "deflate"):
                        raise
                    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    out = inflater.decompress(data, CHUNK)
                first = False
                data = inflater.unconsumed_tail
                if out:
                    yield out
        tail = inflater.flush()
    except zlib.error as exc:
        raise Malformed(f"body does not decode as {encoding}: {exc}") from None
    if tail:
        yield tail
    if not inflater.eof:
        raise Malformed(f"body ends inside its {encoding} stream")


# -- URLs ---------------------------------------------------------------------------------

# `scheme://user:password@` anywhere in a text (a proxy URL inside a library's message,
# a realm or Location we refuse): what `redact` masks.
_USERINFO_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s'\"<>]*@")


def redact(text: str) -> str:
    """`text` with the user-info of every URL in it masked: messages never carry a secret."""
    return _USERINFO_IN_TEXT.sub(r"\1***@", text)


def normalize_url(text: str) -> str:
    """`scheme://host[:port]/path[?query]` as sent: raises InvalidURL for what cannot be.

    URLs of other schemes come back unchanged, for the caller to refuse by name.
    """
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise InvalidURL(f"invalid URL {redact(text)[:200]!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return text
    host = parts.hostname
    if not host:
        raise InvalidURL(f"URL without a host {redact(text)[:200]!r}")
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    elif not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(f"invalid host in {redact(text)[:200]!r}") from None
    if any(c <= " " or c in '"<>\\^`{|}\x7f' for c in host):
        raise InvalidURL(f"invalid host in {redact(text)[:200]!r}")
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    query = quote(parts.query, safe=_QUERY_SAFE)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def join_url(base: str, reference: str) -> str:
    """`reference` (a Location or Link) resolved against `base`, normalized."""
    try:
        joined = urljoin(base, reference.strip())
    except ValueError:
        raise InvalidURL(f"invalid URL {redact(reference)[:200]!r}") from None
    return normalize_url(joined)


def scheme_of(url: str) -> str:
    return url.partition(":")[0].lower()


def origin_of(url: str) -> str:
    """`scheme://netloc` of a normalized URL."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def netloc_of(url: str) -> str:
    return url.partition("://")[2].split("/", 1)[0]


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def target_of(url: str) -> str:
    """Path and query of a normalized URL: what goes on the request line."""
    rest = url.partition("://")[2]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def path_of(url: str) -> str:
    return target_of(url).split("?", 1)[0]
