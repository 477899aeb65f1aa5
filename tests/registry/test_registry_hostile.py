"""Answers a real registry cannot be made to give, through httpx.MockTransport.

Each test states the hostile answer and what the client must do: bounded reads, bounded
retries, the right error family, and never a secret in a message.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.errors import InvalidReferenceError
from shipsure.model import Digest
from shipsure.registry import HttpRegistry, open_registry
from shipsure.registry.interface import (
    AuthError,
    NotFoundError,
    ProtocolError,
    UnavailableError,
)
from shipsure.registry.retry import RetryPolicy

from .conftest import no_sleep_policy

HOST = "registry.test"
BASE = f"https://{HOST}"
DIGEST = Digest.of(b"some blob")
INDEX = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()

Handler = Callable[[httpx.Request], httpx.Response]


def open_mock(
    handler: Handler, policy: RetryPolicy | None = None, **kwargs: object
) -> HttpRegistry:
    return open_registry(
        HOST,
        transport=httpx.MockTransport(handler),
        retries=policy or no_sleep_policy()[0],
        **kwargs,  # type: ignore[arg-type]
    )


def counting(handler: Handler) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def wrapped(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return wrapped, seen


def endless(counter: list[int], chunk: bytes = b"x" * 65536) -> Iterator[bytes]:
    while True:
        counter[0] += len(chunk)
        yield chunk


# -- requests as sent ---------------------------------------------------------------------


def test_manifest_get_and_head_send_every_manifest_type() -> None:
    handler, seen = counting(
        lambda r: httpx.Response(200, content=INDEX, headers={"Content-Type": mt.OCI_INDEX})
    )
    with open_mock(handler) as registry:
        registry.get_manifest("team/app", "v1")
        registry.head_manifest("team/app", "v1")
    for request in seen:
        accepted = {t.strip() for t in request.headers["accept"].split(",")}
        assert accepted == {
            mt.OCI_INDEX,
            mt.OCI_MANIFEST,
            mt.DOCKER_MANIFEST,
            mt.DOCKER_MANIFEST_LIST,
        }
    assert [r.method for r in seen] == ["GET", "HEAD"]
    assert str(seen[0].url) == f"{BASE}/v2/team/app/manifests/v1"


def test_names_that_would_retarget_the_url_are_refused() -> None:
    with open_mock(lambda r: httpx.Response(200)) as registry:
        for bad in ("../etc", "a?b", "A/b", "a//b"):
            with pytest.raises(InvalidReferenceError):
                registry.head_manifest(bad, "v1")
        with pytest.raises(InvalidReferenceError):
            registry.get_manifest("ok", "v1/../../x")


# -- bodies -------------------------------------------------------------------------------


def test_short_manifest_body_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "100"}, content=b"{" * 50)

    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="Content-Length"):
        registry.get_manifest("team/app", "v1")


def test_short_blob_body_is_reported_as_a_short_read() -> None:
    data = b"y" * 50

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "100"}, content=data)

    with open_mock(handler) as registry:
        read = registry.read_blob("team/app", DIGEST, limit=100)
    assert (read.size, read.digest, read.overflow) == (50, Digest.of(data), False)


def test_wrong_digest_header_is_returned_as_sent() -> None:
    lie = "sha256:" + "0" * 64

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=INDEX,
            headers={"Content-Type": mt.OCI_INDEX, "Docker-Content-Digest": lie},
        )

    with open_mock(handler) as registry:
        answer = registry.get_manifest("team/app", "v1")
        head = registry.head_manifest("team/app", "v1")
    assert answer.digest_header == lie and head.digest == lie
    assert answer.raw == INDEX  # the caller hashes the bytes and decides


def test_endless_blob_body_stops_at_limit_plus_one() -> None:
    produced = [0]
    with open_mock(lambda r: httpx.Response(200, content=endless(produced))) as registry:
        read = registry.read_blob("team/app", DIGEST, limit=1_000_000)
    assert read.size == 1_000_001 and read.overflow
    assert produced[0] < 1_000_001 + 65536 * 2


def test_endless_manifest_body_stops_past_4_mib() -> None:
    produced = [0]
    with (
        open_mock(lambda r: httpx.Response(200, content=endless(produced))) as registry,
        pytest.raises(ProtocolError, match="limit"),
    ):
        registry.get_manifest("team/app", "v1")
    assert mt.MAX_MANIFEST_BYTES < produced[0] <= mt.MAX_MANIFEST_BYTES + 65536 * 2


def test_huge_manifest_is_refused_by_its_content_length_before_reading() -> None:
    produced = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Length": str(10 * 2**30)}, content=endless(produced)
        )

    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="over"):
        registry.get_manifest("team/app", "v1")
    assert produced[0] == 0


def test_invalid_content_length_on_head_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "12abc"})

    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="Content-Length"):
        registry.head_blob("team/app", DIGEST)


def test_invalid_json_listing_is_a_protocol_error() -> None:
    with (
        open_mock(lambda r: httpx.Response(200, content=b"{not json")) as registry,
        pytest.raises(ProtocolError, match="not JSON"),
    ):
        list(registry.catalog())


def test_listing_of_the_wrong_shape_is_a_protocol_error() -> None:
    body = json.dumps({"name": "team/app", "tags": "latest"}).encode()
    with (
        open_mock(lambda r: httpx.Response(200, content=body)) as registry,
        pytest.raises(ProtocolError, match="list of strings"),
    ):
        list(registry.tags("team/app"))


def test_null_tags_is_no_tags() -> None:
    body = json.dumps({"name": "team/app", "tags": None}).encode()
    with open_mock(lambda r: httpx.Response(200, content=body)) as registry:
        assert list(registry.tags("team/app")) == []


# -- statuses -----------------------------------------------------------------------------


def test_plain_text_404_has_no_code() -> None:
    with (
        open_mock(lambda r: httpx.Response(404, text="404 page not found\n")) as registry,
        pytest.raises(NotFoundError) as caught,
    ):
        registry.get_manifest("team/app", "v1")
    assert (caught.value.status, caught.value.code) == (404, None)


def test_json_404_carries_the_registry_code() -> None:
    body = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]}
    with (
        open_mock(lambda r: httpx.Response(404, json=body)) as registry,
        pytest.raises(NotFoundError) as caught,
    ):
        registry.get_manifest("team/app", "v1")
    assert caught.value.code == "NAME_UNKNOWN"


def test_5xx_storm_is_retried_a_bounded_number_of_times() -> None:
    handler, seen = counting(lambda r: httpx.Response(503, text="busy"))
    policy, delays = no_sleep_policy(retries=3)
    with open_mock(handler, policy) as registry, pytest.raises(UnavailableError) as caught:
        registry.head_blob("team/app", DIGEST)
    assert len(seen) == 4  # the first try and three retries
    assert len(delays) == 3 and all(0 < d <= policy.max_delay for d in delays)
    assert caught.value.status == 503


def test_plain_500_is_not_retried() -> None:
    handler, seen = counting(lambda r: httpx.Response(500, json={"errors": [{"code": "UNKNOWN"}]}))
    with open_mock(handler) as registry, pytest.raises(UnavailableError):
        registry.get_manifest("team/app", "v1")
    assert len(seen) == 1


def test_429_honours_retry_after_then_succeeds() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200)])
    handler, seen = counting(lambda r: next(answers))
    policy, delays = no_sleep_policy()
    with open_mock(handler, policy) as registry:
        registry.head_blob("team/app", DIGEST)
    assert delays == [2.0]
    assert len(seen) == 2


def test_retry_after_is_capped() -> None:
    handler, _ = counting(lambda r: httpx.Response(429, headers={"Retry-After": "86400"}))
    policy, delays = no_sleep_policy(retries=1)
    with open_mock(handler, policy) as registry, pytest.raises(UnavailableError):
        registry.head_blob("team/app", DIGEST)
    assert delays == [policy.retry_after_cap]


def test_401_without_a_challenge_is_an_auth_error() -> None:
    with open_mock(lambda r: httpx.Response(401)) as registry, pytest.raises(AuthError):
        registry.head_blob("team/app", DIGEST)


def test_ping_of_something_that_is_not_a_registry() -> None:
    with (
        open_mock(lambda r: httpx.Response(404, text="nginx")) as registry,
        pytest.raises(UnavailableError, match="does not serve the registry API"),
    ):
        registry.ping()


# -- redirects ----------------------------------------------------------------------------


def test_redirect_loop_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        other = "/b" if request.url.path != "/b" else f"/v2/team/app/blobs/{DIGEST}"
        return httpx.Response(307, headers={"Location": other})

    handler, seen = counting(handler)
    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="redirect loop"):
        registry.read_blob("team/app", DIGEST, limit=10)
    assert len(seen) == 2


def test_endless_redirect_chain_is_cut() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.params.get("hop", "0"))
        return httpx.Response(302, headers={"Location": f"/next?hop={hop + 1}"})

    handler, seen = counting(handler)
    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="redirects"):
        registry.head_blob("team/app", DIGEST)
    assert len(seen) == 11


def test_redirect_to_storage_follows_without_credentials() -> None:
    from shipsure.registry.credentials import Credentials

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "storage.test":
            return httpx.Response(200, content=b"blob!")
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(307, headers={"Location": "https://storage.test/data?sig=1"})

    handler, seen = counting(handler)
    creds = Credentials("bob", "hunter2-secret")
    with open_mock(handler, credentials=creds) as registry:
        read = registry.read_blob("team/app", DIGEST, limit=100)
    assert read.digest == Digest.of(b"blob!")
    assert seen[-1].url.host == "storage.test"
    assert "authorization" not in seen[-1].headers


def test_redirect_downgrade_to_http_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://storage.test/data"})

    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="downgrades"):
        registry.read_blob("team/app", DIGEST, limit=100)


# -- pagination ---------------------------------------------------------------------------


def _catalog_pages(links: dict[str, str | None]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        last = request.url.params.get("last", "")
        headers = {}
        following = links[last]
        if following is not None:
            headers["Link"] = f'<{following}>; rel="next"'
        return httpx.Response(200, json={"repositories": [f"repo{last or 0}"]}, headers=headers)

    return handler


def test_pagination_relative_and_absolute_links() -> None:
    handler = _catalog_pages(
        {
            "": "/v2/_catalog?n=1&last=1",
            "1": f"{BASE}/v2/_catalog?n=1&last=2",
            "2": None,
        }
    )
    with open_mock(handler) as registry:
        assert list(registry.catalog(page_size=1)) == ["repo0", "repo1", "repo2"]


def test_pagination_loop_is_a_protocol_error() -> None:
    handler = _catalog_pages({"": "/v2/_catalog?n=1&last=1", "1": "/v2/_catalog?n=1&last=1"})
    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="loops"):
        list(registry.catalog(page_size=1))


def test_pagination_to_another_host_is_refused() -> None:
    handler = _catalog_pages({"": "https://elsewhere.test/v2/_catalog?last=1"})
    with open_mock(handler) as registry, pytest.raises(ProtocolError, match="another host"):
        list(registry.catalog(page_size=1))


def test_catalog_page_size_is_bounded() -> None:
    from shipsure.errors import UsageError

    with open_mock(lambda r: httpx.Response(200)) as registry, pytest.raises(UsageError):
        list(registry.catalog(page_size=1001))


# -- referrers ----------------------------------------------------------------------------


def _referrer(digest: Digest, artifact_type: str) -> dict[str, object]:
    return {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(digest),
        "size": 10,
        "artifactType": artifact_type,
    }


def test_referrers_api_answer_is_used_and_filtered() -> None:
    sbom, sig = Digest.of(b"sbom"), Digest.of(b"sig")
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [_referrer(sbom, "application/sbom"), _referrer(sig, "application/sig")],
    }
    handler, seen = counting(
        lambda r: httpx.Response(200, json=body, headers={"Content-Type": mt.OCI_INDEX})
    )
    with open_mock(handler) as registry:
        everything = registry.referrers("team/app", DIGEST)
        sboms = registry.referrers("team/app", DIGEST, artifact_type="application/sbom")
    assert [d.digest for d in everything or []] == [sbom, sig]
    assert [d.digest for d in sboms or []] == [sbom]
    assert seen[1].url.params["artifactType"] == "application/sbom"
    assert len(seen) == 2  # no fallback lookups


def test_referrers_json_404_that_is_not_an_index_falls_back_to_the_tag() -> None:
    fallback = f"sha256-{DIGEST.hex}"
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}

    def handler(request: httpx.Request) -> httpx.Response:
        if "/referrers/" in request.url.path:
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
        assert request.url.path == f"/v2/team/app/manifests/{fallback}"
        return httpx.Response(200, json=index, headers={"Content-Type": mt.OCI_INDEX})

    with open_mock(handler) as registry:
        assert registry.referrers("team/app", DIGEST) == []


def test_referrers_api_answer_that_is_not_an_index_is_a_protocol_error() -> None:
    with (
        open_mock(lambda r: httpx.Response(200, text="<html>")) as registry,
        pytest.raises(ProtocolError, match="not an OCI image index"),
    ):
        registry.referrers("team/app", DIGEST)


# -- the network itself -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_is_unavailable_after_bounded_retries() -> None:
    policy, delays = no_sleep_policy(retries=2)
    with (
        open_registry(f"127.0.0.1:{_closed_port()}", retries=policy) as registry,
        pytest.raises(UnavailableError, match="after 3 attempts"),
    ):
        registry.ping()
    assert len(delays) == 2


def test_a_server_that_never_answers_times_out() -> None:
    # A listening socket that never accepts: the kernel completes the handshake, then
    # nothing is ever read. The read timeout must end it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        policy, delays = no_sleep_policy(retries=1)
        with (
            open_registry(f"127.0.0.1:{port}", retries=policy, timeout=0.2) as registry,
            pytest.raises(UnavailableError, match="timed out"),
        ):
            registry.head_blob("team/app", DIGEST)
    assert len(delays) == 1


def test_transport_errors_mid_body_are_retried() -> None:
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1

        def broken() -> Iterator[bytes]:
            yield b"part"
            raise httpx.ReadError("connection reset by peer")

        if calls[0] == 1:
            return httpx.Response(200, content=broken())
        return httpx.Response(200, content=b"whole")

    with open_mock(handler) as registry:
        read = registry.read_blob("team/app", DIGEST, limit=100)
    assert read.digest == Digest.of(b"whole") and calls[0] == 2


def test_endless_body_on_a_head_is_not_read() -> None:
    produced = [0]
    with open_mock(lambda r: httpx.Response(200, content=endless(produced))) as registry:
        registry.head_blob("team/app", DIGEST)
    assert produced[0] < 1024 * 1024
