"""Bearer token auth against the real registry in `auth: token:` mode and a real token server."""

from __future__ import annotations

import httpx
import pytest

from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.registry.credentials import Credentials
from shipsure.registry.interface import AuthError
from shipsure.sandbox import images

from .conftest import USERS, TokenAuthRegistry

REPO = "t/token-auth"
PASSWORD = USERS["alice"]

# The token flow against distribution 2.8 and v3 (tests/conftest.py).
pytestmark = pytest.mark.both_registries


@pytest.fixture(scope="module")
def pushed(token_registry: TokenAuthRegistry) -> images.PushedIndex:
    token = token_registry.tokens.mint("alice", [f"repository:{REPO}:pull,push"])
    with httpx.Client(
        base_url=token_registry.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    ) as client:
        return images.push_index(token_registry.url, REPO, "v1", client=client)


def test_bearer_flow_fetches_one_token_per_scope_and_reuses_it(
    token_registry: TokenAuthRegistry, pushed: images.PushedIndex
) -> None:
    creds = Credentials("alice", PASSWORD)
    with open_registry(token_registry.host, credentials=creds) as registry:
        registry.ping()
        before = token_registry.tokens.token_requests()
        answer = registry.get_manifest(REPO, "v1")
        assert Digest.of(answer.raw) == Digest.parse(pushed.digest)
        for child in pushed.children:
            assert registry.head_manifest(REPO, child.digest).digest == child.digest
            head = registry.head_blob(REPO, Digest.parse(child.config_digest))
            assert head.size == child.config.size
        # One token for repository:t/token-auth:pull, then sent pre-emptively.
        assert token_registry.tokens.token_requests() == before + 1
        last = token_registry.tokens.requests[-1]
        assert last["user"] == "alice"
        assert last["query"]["scope"] == [f"repository:{REPO}:pull"]
        assert last["query"]["service"] == ["shipsure-test-registry"]


def test_catalog_gets_its_own_scope(
    token_registry: TokenAuthRegistry, pushed: images.PushedIndex
) -> None:
    with open_registry(token_registry.host, credentials=Credentials("alice", PASSWORD)) as r:
        assert REPO in list(r.catalog())
        assert token_registry.tokens.requests[-1]["query"]["scope"] == ["registry:catalog:*"]


def test_wrong_password_is_an_auth_error_without_the_password(
    token_registry: TokenAuthRegistry, pushed: images.PushedIndex
) -> None:
    wrong = "not-the-Pa55word"
    with (
        open_registry(token_registry.host, credentials=Credentials("alice", wrong)) as r,
        pytest.raises(AuthError) as caught,
    ):
        r.get_manifest(REPO, "v1")
    assert caught.value.status == 401
    assert wrong not in str(caught.value)
    assert "refused credentials from explicit" in str(caught.value)


def test_anonymous_is_refused_as_could_not_check(
    token_registry: TokenAuthRegistry, pushed: images.PushedIndex
) -> None:
    with open_registry(token_registry.host) as registry, pytest.raises(AuthError) as caught:
        registry.head_manifest(REPO, "v1")
    assert "anonymous" in str(caught.value)
