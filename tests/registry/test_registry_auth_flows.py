"""Auth flows a real registry seldom shows: Basic, OAuth2 refresh tokens, hostile token servers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.registry.auth import parse_challenges, scope_for_path
from shipsure.registry.credentials import Credentials
from shipsure.registry.interface import AuthError, ProtocolError, UnavailableError

from .conftest import no_sleep_policy

HOST = "registry.test"
DIGEST = Digest.of(b"blob")
PASSWORD = "correct-horse-Battery"
CREDS = Credentials("alice", PASSWORD)
CHALLENGE = (
    'Bearer realm="https://auth.test/token",service="registry.test",'
    'scope="repository:team/app:pull"'
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class FakeTokenRegistry:
    """A registry and token endpoint in one handler, recording every request."""

    def __init__(self, token_answer: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.token_answer = token_answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "auth.test":
            if self.token_answer is not None:
                return self.token_answer
            return httpx.Response(200, json={"access_token": "tok-123", "expires_in": 300})
        if request.headers.get("authorization") == "Bearer tok-123":
            return httpx.Response(200, headers={"Content-Length": "4"})
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE}, json={"errors": []})

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == "auth.test"]


def test_parse_challenges() -> None:
    [bearer] = parse_challenges([CHALLENGE])
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.test/token",
        "service": "registry.test",
        "scope": "repository:team/app:pull",
    }
    two = parse_challenges(['Basic realm="a, b", Bearer realm="x",error="insufficient_scope"'])
    assert [(c.scheme, c.params["realm"]) for c in two] == [("basic", "a, b"), ("bearer", "x")]


def test_scope_for_path() -> None:
    assert scope_for_path("/v2/team/app/manifests/v1") == "repository:team/app:pull"
    assert scope_for_path("/v2/a/blobs/b/blobs/sha256:00") == "repository:a/blobs/b:pull"
    assert scope_for_path("/v2/team/app/tags/list") == "repository:team/app:pull"
    assert scope_for_path("/v2/_catalog") == "registry:catalog:*"
    assert scope_for_path("/v2/") is None


def test_bearer_token_is_fetched_once_and_sent_preemptively() -> None:
    fake = FakeTokenRegistry()
    with open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(fake)) as r:
        for _ in range(5):
            r.head_blob("team/app", DIGEST)
    [token_request] = fake.token_requests()
    assert token_request.headers["authorization"] == _basic("alice", PASSWORD)
    assert token_request.url.params["scope"] == "repository:team/app:pull"
    assert token_request.url.params["account"] == "alice"
    registry_requests = [r for r in fake.requests if r.url.host == HOST]
    assert len(registry_requests) == 6  # one 401, its retry, then four pre-emptive


def test_many_threads_share_one_token_fetch() -> None:
    fake = FakeTokenRegistry()
    with (
        open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(fake)) as r,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        list(pool.map(lambda _: r.head_blob("team/app", DIGEST), range(32)))
    assert len(fake.token_requests()) == 1


def test_identity_token_is_traded_with_an_oauth2_refresh_grant() -> None:
    fake = FakeTokenRegistry()
    creds = Credentials(None, identity_token="refresh-Me-secret")
    with open_registry(HOST, credentials=creds, transport=httpx.MockTransport(fake)) as r:
        r.head_blob("team/app", DIGEST)
    [token_request] = fake.token_requests()
    assert token_request.method == "POST"
    form = dict(x.split("=", 1) for x in token_request.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == "refresh-Me-secret"
    assert "authorization" not in token_request.headers


def test_anonymous_bearer_token_without_credentials() -> None:
    fake = FakeTokenRegistry(httpx.Response(200, json={"token": "tok-123"}))
    with open_registry(HOST, transport=httpx.MockTransport(fake)) as r:
        r.head_blob("team/app", DIGEST)
    [token_request] = fake.token_requests()
    assert "authorization" not in token_request.headers


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (httpx.Response(401, json={}), AuthError, "refused credentials from explicit"),
        (httpx.Response(200, text="<html>"), ProtocolError, "not JSON"),
        (httpx.Response(200, json={"expires_in": 60}), ProtocolError, "no token"),
        (httpx.Response(404), ProtocolError, "HTTP 404"),
    ],
)
def test_token_server_failures(answer: httpx.Response, error: type[Exception], match: str) -> None:
    fake = FakeTokenRegistry(answer)
    with (
        open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(fake)) as r,
        pytest.raises(error, match=match) as caught,
    ):
        r.head_blob("team/app", DIGEST)
    assert PASSWORD not in str(caught.value)


def test_token_server_outage_is_retried_then_unavailable() -> None:
    fake = FakeTokenRegistry(httpx.Response(503))
    policy, delays = no_sleep_policy(retries=2)
    with (
        open_registry(
            HOST, credentials=CREDS, transport=httpx.MockTransport(fake), retries=policy
        ) as r,
        pytest.raises(UnavailableError, match=r"token server auth\.test"),
    ):
        r.head_blob("team/app", DIGEST)
    assert len(fake.token_requests()) == 3 and len(delays) == 2


def test_credentials_never_go_to_a_plain_http_realm() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == HOST, "credentials were sent to the realm"
        challenge = 'Bearer realm="http://auth.test/token",service="s"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    with (
        open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(handler)) as r,
        pytest.raises(AuthError, match="plain HTTP"),
    ):
        r.head_blob("team/app", DIGEST)


def test_basic_challenge_is_answered_then_sent_preemptively() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") == _basic("alice", PASSWORD):
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    with open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(handler)) as r:
        r.head_blob("team/app", DIGEST)
        r.head_blob("team/app", DIGEST)
    assert len(seen) == 3


def test_refused_basic_credentials_are_an_auth_error_without_the_password() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    with (
        open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(handler)) as r,
        pytest.raises(AuthError) as caught,
    ):
        r.get_manifest("team/app", "v1")
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)


def test_endless_401_body_is_not_read_to_the_end() -> None:
    produced = [0]

    def endless() -> Iterator[bytes]:
        while True:
            produced[0] += 65536
            yield b"z" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            return httpx.Response(200, json={"token": "t"})
        headers = {"WWW-Authenticate": CHALLENGE}
        return httpx.Response(401, headers=headers, content=endless())

    with (
        open_registry(HOST, transport=httpx.MockTransport(handler)) as r,
        pytest.raises(AuthError),
    ):
        r.head_blob("team/app", DIGEST)
    assert produced[0] < 1024 * 1024


def test_provider_is_only_asked_on_a_challenge() -> None:
    asked: list[str] = []

    def provider() -> Credentials | None:
        asked.append("yes")
        return CREDS

    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    with open_registry(HOST, credentials=provider, transport=transport) as r:
        r.head_blob("team/app", DIGEST)
    assert asked == []
    assert PASSWORD not in repr(CREDS) and "alice" in repr(CREDS)
    assert json.dumps(repr(CREDS))  # printable, one line


def test_a_failed_token_fetch_releases_its_scope() -> None:
    # The first token request cannot connect; the retry must be able to fetch the token
    # again (a lock left held by the interrupted fetch would hang it).
    fake = FakeTokenRegistry()
    attempts = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            attempts[0] += 1
            if attempts[0] == 1:
                raise httpx.ConnectError("connection refused")
        return fake(request)

    policy, delays = no_sleep_policy(retries=1)
    with open_registry(
        HOST, credentials=CREDS, transport=httpx.MockTransport(handler), retries=policy
    ) as r:
        assert r.head_blob("team/app", DIGEST).size == 4
    assert attempts[0] == 2 and len(delays) == 1
