"""Fixtures of the registry client's tests: a token-auth registry and quick clients."""

from __future__ import annotations

import http.client
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipsure.registry.retry import RetryPolicy
from shipsure.sandbox.registry import (
    Flavour,
    SandboxRegistry,
    missing_reason,
    registry_available,
)

from .tokenserver import ISSUER, SERVICE, TokenServer

USERS = {"alice": "s3cret-Pa55word"}


class TokenAuthRegistry(SandboxRegistry):
    """The sandbox registry with distribution's `auth: token:` pointing at our server."""

    def __init__(self, tokens: TokenServer, flavour: Flavour = "2.8") -> None:
        super().__init__(flavour=flavour)
        self.tokens = tokens

    def _config(self) -> dict[str, object]:
        config = super()._config()
        config["auth"] = {
            "token": {
                "realm": self.tokens.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(self.tokens.bundle),
            }
        }
        return config

    def _answers_v2(self) -> bool:
        # Ready means "answers at all": with token auth, /v2/ is a 401 challenge.

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            connection.request("GET", "/v2/")
            return connection.getresponse().status in (200, 401)
        except OSError:
            return False
        finally:
            connection.close()


@pytest.fixture(scope="session")
def token_registry(registry_flavour: Flavour) -> Iterator[TokenAuthRegistry]:
    """Token auth on 2.8, or on both flavours for tests marked `both_registries`."""
    if not registry_available(registry_flavour):
        pytest.skip(missing_reason(registry_flavour))
    with tempfile.TemporaryDirectory(prefix="shipsure-tokens-") as workdir:
        tokens = TokenServer(Path(workdir), USERS)
        tokens.start()
        try:
            with TokenAuthRegistry(tokens, registry_flavour) as registry:
                yield registry
        finally:
            tokens.close()


def no_sleep_policy(retries: int = 3) -> tuple[RetryPolicy, list[float]]:
    """A retry policy that records its delays instead of sleeping."""
    delays: list[float] = []
    return RetryPolicy(retries=retries, sleep=delays.append), delays
