"""The hostile suite over every wire: the production keep-alive wire and httpx's transport,
each against a real socket server sending the hostile bytes, and shipsure's mock wire.

Each answer is written once (a `MockAnswer` handler) and must come out the same on each
wire: bounded reads, bounded retries, the right error family, and a whole-request
deadline that a server dripping any part of its answer cannot stretch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.model import Digest
from shipsure.registry import HttpRegistry, open_registry
from shipsure.registry.httpx_wire import HttpxWire
from shipsure.registry.interface import NotFoundError, ProtocolError, UnavailableError
from shipsure.registry.mock_server import hostile_server
from shipsure.registry.mock_wire import Handler, MockAnswer, MockWire
from shipsure.registry.wire import Request

from .conftest import no_sleep_policy

DIGEST = Digest.of(b"some blob")
INDEX = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()
WIRES = ["keepalive", "httpx", "mock"]


class Served:
    """A registry client over one wire, and the requests its server saw."""

    def __init__(self, registry: HttpRegistry, requests: list[Request]) -> None:
        self.registry = registry
        self.requests = requests


@contextmanager
def serve(
    wire: str, handler: Handler, *, retries: int = 0, timeout: float = 5.0
) -> Iterator[Served]:
    policy = no_sleep_policy(retries)[0]
    if wire == "mock":
        mock = MockWire(handler)
        with open_registry(
            "127.0.0.1:5000", transport=mock, retries=policy, timeout=timeout
        ) as registry:
            yield Served(registry, mock.requests)
        return
    with hostile_server(handler) as server:
        transport = None
        if wire == "httpx":
            # httpx's own network transport, as used when a proxy is configured.
            transport = HttpxWire(httpx.Client(follow_redirects=False, trust_env=False))
        with open_registry(
            server.host, transport=transport, retries=policy, timeout=timeout
        ) as registry:
            yield Served(registry, server.requests)


def endless(counter: list[int], piece: bytes = b"x" * 65536) -> Iterator[bytes]:
    while True:
        counter[0] += len(piece)
        yield piece


pytestmark = pytest.mark.parametrize("wire", WIRES)


# -- bodies -------------------------------------------------------------------------------


def test_short_manifest_body_is_never_taken_for_the_manifest(wire: str) -> None:
    short = MockAnswer(200, [("Content-Length", "100")], b"{" * 50)
    with serve(wire, lambda r: short, retries=1) as s, pytest.raises(UnavailableError) as caught:
        s.registry.get_manifest("team/app", "v1")
    assert "closed early" in str(caught.value)
    assert len(s.requests) == 2  # a cut body is retried like a reset connection


def test_short_blob_body_is_a_short_read(wire: str) -> None:
    data = b"y" * 50
    with serve(wire, lambda r: MockAnswer(200, [("Content-Length", "100")], data)) as s:
        read = s.registry.read_blob("team/app", DIGEST, limit=100)
    assert (read.size, read.digest, read.overflow, read.length) == (50, Digest.of(data), False, 100)


def test_wrong_digest_header_is_returned_as_sent(wire: str) -> None:
    lie = "sha256:" + "0" * 64
    answer = MockAnswer(
        200, [("Content-Type", mt.OCI_INDEX), ("Docker-Content-Digest", lie)], INDEX
    )
    with serve(wire, lambda r: answer) as s:
        got = s.registry.get_manifest("team/app", "v1")
        head = s.registry.head_manifest("team/app", "v1")
    assert got.digest_header == lie and head.digest == lie and got.raw == INDEX


def test_endless_blob_body_stops_at_limit_plus_one(wire: str) -> None:
    produced = [0]
    with serve(wire, lambda r: MockAnswer(200, body=endless(produced))) as s:
        read = s.registry.read_blob("team/app", DIGEST, limit=1_000_000)
    assert read.size == 1_000_001 and read.overflow
    assert produced[0] < 8 * 1024 * 1024  # what socket buffers hold, not without bound


def test_endless_manifest_body_stops_past_4_mib(wire: str) -> None:
    produced = [0]
    with (
        serve(wire, lambda r: MockAnswer(200, body=endless(produced))) as s,
        pytest.raises(ProtocolError, match="limit"),
    ):
        s.registry.get_manifest("team/app", "v1")
    assert mt.MAX_MANIFEST_BYTES < produced[0] < mt.MAX_MANIFEST_BYTES + 8 * 1024 * 1024


def test_huge_manifest_is_refused_by_its_content_length_before_reading(wire: str) -> None:
    produced = [0]
    answer = MockAnswer(200, [("Content-Length", str(10 * 2**30))], endless(produced))
    with serve(wire, lambda r: answer) as s, pytest.raises(ProtocolError, match="over"):
        s.registry.get_manifest("team/app", "v1")
    assert produced[0] < 8 * 1024 * 1024


def test_gzip_bomb_manifest_is_cut_at_the_limit(wire: str) -> None:
    import gzip

    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    answer = MockAnswer(200, [("Content-Encoding", "gzip")], bomb)
    with serve(wire, lambda r: answer) as s, pytest.raises(ProtocolError, match="limit"):
        s.registry.get_manifest("team/app", "v1")


def test_invalid_json_listing_is_a_protocol_error(wire: str) -> None:
    with (
        serve(wire, lambda r: MockAnswer(200, body=b"{not json")) as s,
        pytest.raises(ProtocolError, match="not JSON"),
    ):
        list(s.registry.catalog())


def test_endless_body_on_a_head_is_not_read(wire: str) -> None:
    produced = [0]
    with serve(wire, lambda r: MockAnswer(200, [("Content-Length", "7")], endless(produced))) as s:
        assert s.registry.head_blob("team/app", DIGEST).size == 7
    assert produced[0] == 0


# -- statuses and redirects ---------------------------------------------------------------


def test_5xx_storm_is_retried_a_bounded_number_of_times(wire: str) -> None:
    with (
        serve(wire, lambda r: MockAnswer(503, body=b"busy"), retries=3) as s,
        pytest.raises(UnavailableError) as caught,
    ):
        s.registry.head_blob("team/app", DIGEST)
    assert len(s.requests) == 4 and caught.value.status == 503


def test_json_404_carries_the_registry_code(wire: str) -> None:
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN"}]}).encode()
    with serve(wire, lambda r: MockAnswer(404, body=body)) as s, pytest.raises(NotFoundError) as e:
        s.registry.get_manifest("team/app", "v1")
    assert e.value.code == "MANIFEST_UNKNOWN"


def test_redirect_loop_is_a_protocol_error(wire: str) -> None:
    def loop(request: Request) -> MockAnswer:
        other = "/b" if not request.url.endswith("/b") else f"/v2/team/app/blobs/{DIGEST}"
        return MockAnswer(307, [("Location", other)])

    with serve(wire, loop) as s, pytest.raises(ProtocolError, match="redirect loop"):
        s.registry.read_blob("team/app", DIGEST, limit=10)
    assert len(s.requests) == 2


def test_endless_redirect_chain_is_cut(wire: str) -> None:
    def chain(request: Request) -> MockAnswer:
        hop = int(request.url.rsplit("hop=", 1)[1]) if "hop=" in request.url else 0
        return MockAnswer(302, [("Location", f"/next?hop={hop + 1}")])

    with serve(wire, chain) as s, pytest.raises(ProtocolError, match="redirects"):
        s.registry.head_blob("team/app", DIGEST)
    assert len(s.requests) == 11


# -- slow drip: the whole request has one deadline ----------------------------------------


@pytest.mark.parametrize("phase", ["status", "headers", "body"])
def test_a_drip_in_any_phase_ends_at_the_deadline(wire: str, phase: str) -> None:
    # One byte every 0.2 s: each pause is far below the 1 s timeout, so only a deadline
    # over the whole request ends it. The answer would take over a minute to send.
    body = INDEX * 20
    answer = MockAnswer(
        200,
        [("Content-Type", mt.OCI_INDEX)],
        body,
        pause=0.2,
        drip=phase,  # type: ignore[arg-type]
    )
    with serve(wire, lambda r: answer, timeout=1.0) as s:
        with pytest.raises(UnavailableError, match="timed out"):
            s.registry.get_manifest("team/app", "v1")
        assert len(s.requests) == 1


def test_a_dripping_blob_ends_at_the_deadline(wire: str) -> None:
    answer = MockAnswer(200, [("Content-Length", "4096")], b"z" * 4096, pause=0.2, drip="body")
    with (
        serve(wire, lambda r: answer, timeout=1.0) as s,
        pytest.raises(UnavailableError, match="timed out"),
    ):
        s.registry.read_blob("team/app", DIGEST, limit=4096)


def test_a_steady_body_outlasts_the_timeout_by_its_allowance(wire: str) -> None:
    # 2 MiB in 16 pieces 0.1 s apart: 1.6 s, past the 1 s timeout, but arriving far
    # faster than the 1 MiB/s allowance, so it is not cut.
    piece = b"q" * (128 * 1024)
    answer = MockAnswer(200, [("Content-Length", str(16 * len(piece)))], [piece] * 16, pause=0.1)
    with serve(wire, lambda r: answer, timeout=1.0) as s:
        read = s.registry.read_blob("team/app", DIGEST, limit=16 * len(piece))
    assert read.size == 16 * len(piece) and not read.overflow


def test_a_dripping_token_server_ends_at_the_deadline(wire: str) -> None:
    def handler(request: Request) -> MockAnswer:
        if "/token" in request.url:
            return MockAnswer(200, [], b'{"token": "t"}', pause=0.2, drip="headers")
        realm = request.url.split("/v2/", 1)[0] + "/token"
        return MockAnswer(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="r"')])

    with serve(wire, handler, timeout=1.0) as s:
        with pytest.raises(UnavailableError, match="timed out"):
            s.registry.head_blob("team/app", DIGEST)
        assert [r.url.split("/")[-1].split("?")[0] for r in s.requests] == [str(DIGEST), "token"]
