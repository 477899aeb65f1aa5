"""A wire of answers made by a function: hostile answers for tests, with no network.

`MockWire(handler)` hands each `Request` to `handler`, which returns a `MockAnswer` (or
raises a `WireError` to fail the request as a network would). The answer is served the
way the production wire serves one: a HEAD has no body; a body that ends before its
Content-Length raises `Disconnected`; a piece of the body may be a `WireError` to raise
there; and every request is held to `Timeouts.total` as `transport.KeepAliveWire` holds
it, with `pause` seconds spent (really, by sleeping) before each piece, or, with
`drip="status"` or `"headers"`, before each byte of the status line or headers.

The same answers can be sent as bytes over a real socket (the test suite's hostile
server does), so one hostile suite runs over this wire, the production wire and httpx.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shipsure.registry.wire import (
    Deadline,
    Disconnected,
    Headers,
    PieceByPiece,
    Request,
    Timeouts,
    WireError,
    WireTimeout,
)

Drip = Literal["status", "headers", "body"]
Piece = bytes | WireError


@dataclass
class MockAnswer:
    """One answer. `body` is the whole body, or its pieces as they are sent (a generator
    may be endless). `pause` is the seconds before each piece; with `drip` set, before
    each byte of that part of the answer instead."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes | Iterable[Piece] = b""
    pause: float = 0.0
    drip: Drip | None = None

    def head_bytes(self) -> tuple[bytes, bytes]:
        """The status line and the header block as sent (HTTP/1.1, CRLF)."""
        status = f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Answer')}\r\n"
        block = "".join(f"{name}: {value}\r\n" for name, value in self.header_list()) + "\r\n"
        return status.encode("latin-1"), block.encode("latin-1")

    def header_list(self) -> list[tuple[str, str]]:
        """`headers`, plus Content-Length for a whole body that does not state one."""
        headers = list(self.headers)
        declared = any(name.lower() == "content-length" for name, _ in headers)
        if isinstance(self.body, bytes) and not declared:
            headers.append(("Content-Length", str(len(self.body))))
        return headers

    def pieces(self) -> Iterator[Piece]:
        """The body as sent: one byte at a time when it drips."""
        source: Iterable[Piece] = [self.body] if isinstance(self.body, bytes) else self.body
        for piece in source:
            if self.drip == "body" and isinstance(piece, bytes):
                yield from (piece[i : i + 1] for i in range(len(piece)))
            elif not isinstance(piece, bytes) or piece:
                yield piece


_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

Handler = Callable[[Request], MockAnswer]


@dataclass
class MockWire:
    """A `wire.Wire` whose answers come from `handler`; `requests` records every request."""

    handler: Handler
    requests: list[Request] = field(default_factory=list)

    def send(self, request: Request, timeouts: Timeouts) -> MockResponse:
        deadline = Deadline(timeouts.total)
        self.requests.append(request)
        answer = self.handler(request)
        if answer.drip in ("status", "headers") and answer.pause > 0:
            status, block = answer.head_bytes()
            dripped = len(status) + len(block) if answer.drip == "status" else len(block)
            _spend(answer.pause * dripped, deadline, timeouts)
        return MockResponse(request, answer, deadline, timeouts)

    def close(self) -> None:
        return None


class MockResponse(PieceByPiece):
    def __init__(
        self, request: Request, answer: MockAnswer, deadline: Deadline, timeouts: Timeouts
    ) -> None:
        self.request = request
        self.status = answer.status
        self.headers = Headers(answer.header_list())
        self._answer = answer
        self._deadline = deadline
        self._timeouts = timeouts
        self._pieces = answer.pieces() if request.method != "HEAD" else iter(())
        self._received = 0
        length = self.headers.get("content-length")
        self._length = int(length) if length and length.isascii() and length.isdigit() else None

    def _next_piece(self) -> bytes | None:
        piece = next(self._pieces, None)
        if piece is None:
            if self._length is not None and self._received < self._length:
                self._done = True
                raise Disconnected("server closed the connection before the body's end")
            return None
        if self._answer.pause > 0:
            _spend(self._answer.pause, self._deadline, self._timeouts)
        self._deadline.check()
        if isinstance(piece, WireError):
            raise piece
        self._received += len(piece)
        self._deadline.received += len(piece)
        return piece

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if callable(close):
            close()  # an endless generator stops here


def _spend(seconds: float, deadline: Deadline, timeouts: Timeouts) -> None:
    """Wait `seconds` as a slow server makes a client wait: no longer than a single read
    may stall or than the request has left, and time out when that is shorter."""
    allowed = min(timeouts.read, deadline.remaining())
    time.sleep(max(0.0, min(seconds, allowed)))
    if seconds > allowed:
        raise WireTimeout("timed out: the whole request took longer than the timeout")
