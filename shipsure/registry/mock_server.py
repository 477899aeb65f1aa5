"""A real HTTP/1.1 server on 127.0.0.1 that sends `MockAnswer`s as bytes on a socket.

For tests of hostile answers at the wire level, where a mock wire cannot reach: a status
line, headers or body sent one byte every few tenths of a second, a body cut short of its
Content-Length, an endless body. Each answer is made by the same kind of handler a
`MockWire` takes, so one suite runs over the production wire, httpx's and the mock.

Connections are kept alive while answers are whole; an answer whose body is a stream
without a length, or ends short of it, closes its connection. Every request is recorded;
`stop()` ends drips and closes every connection.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from shipsure.registry.mock_wire import Handler, MockAnswer
from shipsure.registry.wire import Request, WireError

MAX_HEAD = 64 * 1024


class HostileServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.completed = 0  # answers sent to their end
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> HostileServer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        self._listener.close()
        with self._lock:
            for conn in self._connections:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        for thread in [self._acceptor, *self._threads]:
            thread.join(timeout=5)

    # -- serving ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buffered = b""
        try:
            while not self._stop.is_set():
                request, buffered = self._read_request(conn, buffered)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                answer = self.handler(request)
                if not self._send(conn, request, answer):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _read_request(self, conn: socket.socket, buffered: bytes) -> tuple[Request | None, bytes]:
        while b"\r\n\r\n" not in buffered:
            if len(buffered) > MAX_HEAD:
                return None, b""
            data = conn.recv(65536)
            if not data:
                return None, b""
            buffered += data
        head, _, rest = buffered.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        while len(rest) < length:
            data = conn.recv(65536)
            if not data:
                return None, b""
            rest += data
        body, rest = rest[:length], rest[length:]
        url = f"http://127.0.0.1:{self.port}{target}"
        return Request(method, url, headers, body or None), rest

    def _send(self, conn: socket.socket, request: Request, answer: MockAnswer) -> bool:
        """Send `answer`; whether the connection may serve another request."""
        status, block = answer.head_bytes()
        drip = answer.drip
        pause = answer.pause
        if not self._write(conn, status, pause if drip == "status" else 0.0):
            return False
        if not self._write(conn, block, pause if drip in ("status", "headers") else 0.0):
            return False
        if request.method == "HEAD":
            self.completed += 1
            return True
        declared = next(
            (int(v) for k, v in answer.header_list() if k.lower() == "content-length"), None
        )
        sent = 0
        pieces = answer.pieces()
        try:
            for piece in pieces:
                if isinstance(piece, WireError):
                    return False  # the network fails here: cut the connection
                wait = pause if drip in (None, "body") else 0.0
                if wait and self._stop.wait(wait):
                    return False
                conn.sendall(piece)
                sent += len(piece)
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()
        self.completed += 1
        # Without a length (or short of it) the end of the body is the end of the connection.
        return declared is not None and sent == declared

    def _write(self, conn: socket.socket, data: bytes, pause: float) -> bool:
        if not pause:
            conn.sendall(data)
            return True
        for i in range(len(data)):
            if self._stop.wait(pause):
                return False
            conn.sendall(data[i : i + 1])
        return True


@contextmanager
def hostile_server(handler: Handler) -> Iterator[HostileServer]:
    server = HostileServer(handler).start()
    try:
        yield server
    finally:
        server.stop()
