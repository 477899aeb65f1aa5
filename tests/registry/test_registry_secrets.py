"""Secrets stay secret: credentials never go over plain HTTP to a host that plain HTTP was
not allowed for, and no message carries the user-info of a URL."""

from __future__ import annotations

import base64

import httpx
import pytest

from shipsure.errors import BadInputError
from shipsure.model import Digest
from shipsure.registry import open_registry, resolve_endpoint
from shipsure.registry.credentials import Credentials
from shipsure.registry.httpx_wire import wire_error
from shipsure.registry.interface import AuthError
from shipsure.registry.wire import InvalidURL, join_url, normalize_url, redact

from .conftest import USERS, TokenAuthRegistry, no_sleep_policy

PASSWORD = "correct-horse-Battery"
CREDS = Credentials("alice", PASSWORD)
DIGEST = Digest.of(b"blob")


class RealmRegistry:
    """A registry at `host` whose challenge names `realm`; records every request."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "tok-1", "expires_in": 300})
        if request.headers.get("authorization") == "Bearer tok-1":
            return httpx.Response(200, headers={"Content-Length": "4"})
        challenge = f'Bearer realm="{self.realm}",service="reg",scope="repository:team/app:pull"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    def sent_credentials_to(self, host: str) -> bool:
        return any(r.url.host == host and "authorization" in r.headers for r in self.requests)


@pytest.mark.parametrize(
    ("registry", "realm", "insecure", "allowed"),
    [
        # A loopback registry is spoken to over plain HTTP; its realm elsewhere is not.
        ("127.0.0.1:5000", "http://auth.example.test/token", False, False),
        ("localhost:5000", "http://10.0.0.7:8080/token", False, False),
        # ...unless the user allowed plain HTTP (--insecure), or the realm is loopback too.
        ("127.0.0.1:5000", "http://auth.example.test/token", True, True),
        ("127.0.0.1:5000", "http://127.0.0.1:5001/token", False, True),
        ("127.0.0.1:5000", "http://[::1]:5001/token", False, True),
        # HTTPS realms are always fine; a plain-HTTP realm of an HTTPS registry is not.
        ("127.0.0.1:5000", "https://auth.example.test/token", False, True),
        ("registry.test", "http://registry.test/token", False, False),
    ],
)
def test_basic_credentials_reach_a_plain_http_realm_only_where_plain_http_is_allowed(
    registry: str, realm: str, insecure: bool, allowed: bool
) -> None:
    server = RealmRegistry(realm)
    realm_host = httpx.URL(realm).host
    with open_registry(
        registry,
        transport=httpx.MockTransport(server),
        credentials=CREDS,
        insecure=insecure,
        retries=no_sleep_policy(0)[0],
    ) as client:
        if allowed:
            client.head_blob("team/app", DIGEST)
            assert server.sent_credentials_to(realm_host)
        else:
            with pytest.raises(AuthError, match="plain HTTP") as caught:
                client.head_blob("team/app", DIGEST)
            assert PASSWORD not in str(caught.value)
            assert not any(r.url.path == "/token" for r in server.requests)


def test_anonymous_token_fetch_over_plain_http_elsewhere_is_fine() -> None:
    server = RealmRegistry("http://auth.example.test/token")
    with open_registry("127.0.0.1:5000", transport=httpx.MockTransport(server)) as client:
        client.head_blob("team/app", DIGEST)
    [token_request] = [r for r in server.requests if r.url.path == "/token"]
    assert "authorization" not in token_request.headers


def test_real_token_server_on_loopback_gets_the_credentials(
    token_registry: TokenAuthRegistry,
) -> None:
    # The registry and its realm are both loopback: plain HTTP is allowed for each.
    creds = Credentials("alice", USERS["alice"])
    before = token_registry.tokens.token_requests()
    with open_registry(token_registry.host, credentials=creds) as client:
        client.ping()
    assert token_registry.tokens.token_requests() == before + 1
    assert token_registry.tokens.requests[-1]["user"] == "alice"


# -- no user-info in messages ---------------------------------------------------------------


def test_redact_masks_user_info_of_every_url_in_a_text() -> None:
    text = "proxy http://ci:PW@proxy:3128 refused; then https://tok@cdn.test/x and ftp://a:b@c"
    assert redact(text) == (
        "proxy http://***@proxy:3128 refused; then https://***@cdn.test/x and ftp://***@c"
    )
    assert redact("no URL here: ci:PW@host") == "no URL here: ci:PW@host"


@pytest.mark.parametrize(
    "url", ["https://ci:PW@[not-an-ip/x", "https://ci:PW@reg.test:99999/x", "https://ci:PW@/x"]
)
def test_invalid_url_messages_do_not_carry_the_password(url: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        normalize_url(url)
    assert "PW" not in str(caught.value)
    with pytest.raises(InvalidURL) as caught:
        join_url("https://reg.test/v2/", url)
    assert "PW" not in str(caught.value)


def test_a_valid_url_loses_its_user_info_on_the_wire() -> None:
    assert normalize_url("https://ci:PW@reg.test/v2/") == "https://reg.test/v2/"


def test_httpx_errors_naming_a_proxy_with_credentials_are_masked() -> None:
    error = wire_error(httpx.ProxyError("cannot reach http://ci:PW@proxy.test:3128"))
    assert "PW" not in str(error) and "proxy.test:3128" in str(error)


@pytest.mark.parametrize(
    "host", ["ci:PW@registry.test", "https://ci:PW@registry.test", "PW@registry.test:5000"]
)
def test_registry_host_option_with_credentials_is_refused_masked(host: str) -> None:
    with pytest.raises(BadInputError) as caught:
        resolve_endpoint(host)
    assert "PW" not in str(caught.value) and "--password-stdin" in str(caught.value)


def test_credentials_repr_and_basic_header_never_print_the_password() -> None:
    assert PASSWORD not in repr(CREDS) and PASSWORD not in str(CREDS)
    encoded = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert encoded not in repr(CREDS)


# -- regular expressions and digits: ASCII, whole -------------------------------------------


def test_retry_after_takes_ascii_digits_only() -> None:
    from shipsure.registry.retry import parse_retry_after

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("\u00b2") is None  # "²".isdigit() is True, float() refuses it
    assert parse_retry_after("\u0661") is None  # an Arabic-Indic one
