"""JSON nested deeper than the parser's recursion limit, from every untrusted source in
reach of verify and serve: each is that source's own "not JSON" error, never a
RecursionError (a traceback, or a dropped connection in serve)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shipsure.registry import open_registry
from shipsure.registry.credentials import CredentialsError, _load_config
from shipsure.registry.interface import ProtocolError
from shipsure.serve.events import NotificationError, parse_notification
from tests.registry.conftest import no_sleep_policy
from tests.registry.test_registry_auth_flows import CREDS, DIGEST, HOST, FakeTokenRegistry

DEEP = b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


def test_a_deeply_nested_notification_is_refused_400() -> None:
    with pytest.raises(NotificationError) as refused:
        parse_notification("application/vnd.docker.distribution.events.v1+json", DEEP)
    assert refused.value.status == 400


def test_a_deeply_nested_listing_is_a_protocol_error() -> None:
    with (
        open_registry(
            "registry.test",
            transport=httpx.MockTransport(lambda r: httpx.Response(200, content=DEEP)),
            retries=no_sleep_policy()[0],
        ) as registry,
        pytest.raises(ProtocolError, match="not JSON"),
    ):
        list(registry.catalog())


def test_a_deeply_nested_token_answer_is_a_protocol_error() -> None:
    fake = FakeTokenRegistry(httpx.Response(200, content=DEEP))
    with (
        open_registry(HOST, credentials=CREDS, transport=httpx.MockTransport(fake)) as r,
        pytest.raises(ProtocolError, match="not JSON"),
    ):
        r.head_blob("team/app", DIGEST)


def test_a_deeply_nested_docker_config_is_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(DEEP)
    with pytest.raises(CredentialsError, match=r"config\.json"):
        _load_config(config)
