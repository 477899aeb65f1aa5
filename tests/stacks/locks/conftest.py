"""Lock backends under test: a file directory, and real servers started once per session.

Only the servers a selected test needs are started (`-k file` starts none). Every backend
is opened through `open_backend(url)`, so the URL forms are exercised too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipsure.stacks.locks import open_backend

from .fake_vault import FakeVault
from .harness import FakeClock, Harness
from .servers import etcd_server, postgres_server, redis_server

BACKENDS = ["file", "redis", "etcd", "postgres", "vault"]
PREFIX = "shipsure-test/locks/"
# Redis and etcd own the TTL: tests wait it out, so keep it short (etcd counts seconds).
SERVER_TTL = 1.0
# The others compare times on the client: tests step a fake clock instead of waiting.
CLIENT_TTL = 30.0


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def etcd_url() -> Iterator[str]:
    with etcd_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def fake_vault() -> Iterator[FakeVault]:
    vault = FakeVault().start()
    yield vault
    vault.stop()


@pytest.fixture
def file_harness(tmp_path: Path) -> Harness:
    clock = FakeClock()
    url = f"file://{tmp_path}/locks"
    return Harness("file", lambda: open_backend(url, clock=clock), clock, CLIENT_TTL)


@pytest.fixture
def redis_harness(redis_url: str) -> Harness:
    url = f"{redis_url}?prefix={PREFIX}"
    return Harness("redis", lambda: open_backend(url), None, SERVER_TTL)


@pytest.fixture
def etcd_harness(etcd_url: str) -> Harness:
    url = etcd_url.replace("http://", "etcd://") + f"?prefix={PREFIX}"
    return Harness("etcd", lambda: open_backend(url), None, SERVER_TTL)


@pytest.fixture
def postgres_harness(postgres_url: str) -> Harness:
    clock = FakeClock()
    url = f"{postgres_url}?prefix={PREFIX}"
    return Harness("postgres", lambda: open_backend(url, clock=clock), clock, CLIENT_TTL)


@pytest.fixture
def vault_harness(fake_vault: FakeVault, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("VAULT_TOKEN", fake_vault.token)
    clock = FakeClock()
    url = fake_vault.url.replace("http://", "vault+http://") + f"/{fake_vault.mount}/{PREFIX}"
    return Harness("vault", lambda: open_backend(url, clock=clock), clock, CLIENT_TTL)


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    made: Harness = request.getfixturevalue(f"{request.param}_harness")
    try:
        yield made
    finally:
        made.close_all()
