"""What only some backends need: Vault's check-and-set corners, errors as one clear line."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shipsure.stacks.locks import LockError, LockInfo, open_backend
from shipsure.stacks.locks.etcd import EtcdLockBackend, _b64
from shipsure.stacks.locks.interface import LockUnreadable
from shipsure.stacks.locks.vault import VaultLockBackend

from .conftest import PREFIX
from .fake_vault import FakeVault
from .harness import FakeClock
from .servers import free_port

TTL = 30.0


@pytest.fixture
def vault(fake_vault: FakeVault) -> Iterator[tuple[VaultLockBackend, FakeClock]]:
    clock = FakeClock()
    backend = VaultLockBackend(
        fake_vault.url, mount=fake_vault.mount, token=fake_vault.token, prefix=PREFIX, clock=clock
    )
    yield backend, clock
    backend.close()


def _vault_http(fake_vault: FakeVault) -> httpx.Client:
    return httpx.Client(base_url=fake_vault.url, headers={"X-Vault-Token": fake_vault.token})


def test_fake_vault_keeps_the_version_after_a_soft_delete(fake_vault: FakeVault) -> None:
    path = f"/v1/{fake_vault.mount}/data/{PREFIX}fake-rules"
    with _vault_http(fake_vault) as http:
        assert http.post(path, json={"options": {"cas": 0}, "data": {"a": 1}}).status_code == 200
        assert http.delete(path).status_code == 204
        refused = http.post(path, json={"options": {"cas": 0}, "data": {"a": 2}})
        deleted = http.get(path)
        assert http.post(path, json={"options": {"cas": 1}, "data": {"a": 3}}).status_code == 200
        http.delete(f"/v1/{fake_vault.mount}/metadata/{PREFIX}fake-rules")

    assert refused.status_code == 400
    assert refused.json()["errors"] == ["check-and-set parameter did not match the current version"]
    assert deleted.status_code == 404
    assert deleted.json()["data"]["metadata"]["version"] == 1


def test_vault_release_deletes_metadata_so_cas_zero_works_again(
    vault: tuple[VaultLockBackend, FakeClock], fake_vault: FakeVault
) -> None:
    backend, _ = vault
    assert backend.acquire("stacks/relock", "runner-a", TTL) is not None
    assert backend.release("stacks/relock", "runner-a") is True

    assert f"{PREFIX}stacks/relock" not in fake_vault.secrets  # metadata gone, not soft-deleted
    again = backend.acquire("stacks/relock", "runner-b", TTL)
    assert again is not None and again.owner == "runner-b"
    assert fake_vault.secrets[f"{PREFIX}stacks/relock"].current_version == 1


def test_vault_lock_soft_deleted_by_someone_else_can_be_taken(
    vault: tuple[VaultLockBackend, FakeClock], fake_vault: FakeVault
) -> None:
    backend, _ = vault
    assert backend.acquire("stacks/soft", "runner-a", TTL) is not None
    with _vault_http(fake_vault) as http:
        assert http.delete(f"/v1/{fake_vault.mount}/data/{PREFIX}stacks/soft").status_code == 204

    assert backend.get("stacks/soft") is None
    taken = backend.acquire("stacks/soft", "runner-b", TTL)
    assert taken is not None and taken.owner == "runner-b"
    assert fake_vault.secrets[f"{PREFIX}stacks/soft"].current_version == 2


def test_vault_release_near_expiry_frees_the_lock_under_cas(
    vault: tuple[VaultLockBackend, FakeClock], fake_vault: FakeVault
) -> None:
    backend, clock = vault
    assert backend.acquire("stacks/late", "runner-a", TTL) is not None
    clock.advance(TTL - 2)  # too close to expiry to delete the metadata unconditionally

    assert backend.release("stacks/late", "runner-a") is True
    assert backend.get("stacks/late") is None
    assert "stacks/late" not in {info.key for info in backend.list()}
    assert backend.acquire("stacks/late", "runner-b", TTL) is not None


def test_vault_wrong_token_is_a_one_line_lock_error(fake_vault: FakeVault) -> None:
    backend = VaultLockBackend(fake_vault.url, "secret", token="wrong", prefix=PREFIX)
    with pytest.raises(LockError) as caught:
        backend.acquire("stacks/x", "runner-a", TTL)
    backend.close()
    assert "HTTP 403" in str(caught.value) and "VAULT_TOKEN" in str(caught.value)


def test_vault_server_error_is_a_lock_error_not_held() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"errors": ["Vault is sealed"]})

    backend = VaultLockBackend(
        "http://vault.invalid:8200", "secret", "t", PREFIX, transport=httpx.MockTransport(broken)
    )
    with pytest.raises(LockError, match="HTTP 503: Vault is sealed"):
        backend.acquire("stacks/x", "runner-a", TTL)
    backend.close()


def test_etcd_answer_that_is_not_json_is_a_lock_error() -> None:
    def proxy_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    backend = EtcdLockBackend(
        "http://etcd.invalid:2379", PREFIX, transport=httpx.MockTransport(proxy_page)
    )
    with pytest.raises(LockError, match="HTTP 502, not an etcd JSON answer"):
        backend.get("stacks/x")
    backend.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0",
        "etcd://127.0.0.1:{port}",
        "postgresql://postgres@127.0.0.1:{port}/postgres",
        "vault+http://127.0.0.1:{port}/secret",
    ],
)
def test_unreachable_server_is_a_one_line_lock_error(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "t")
    backend = open_backend(url.format(port=free_port()))  # nothing listens there
    try:
        with pytest.raises(LockError) as caught:
            backend.acquire("stacks/x", "runner-a", TTL)
    finally:
        backend.close()
    message = str(caught.value)
    assert "stacks/x" in message and "127.0.0.1" in message
    assert "\n" not in message


def test_redis_key_that_is_not_a_lock_record_is_a_lock_error(redis_url: str) -> None:
    backend = open_backend(f"{redis_url}?prefix={PREFIX}")
    try:
        backend.client.set(f"{PREFIX}stacks/junk", b"not json")  # type: ignore[attr-defined]
        with pytest.raises(LockUnreadable, match="not a shipsure lock record"):
            backend.get("stacks/junk")
        # Listed as what it is, next to the live locks: one junk key hides nothing.
        assert backend.acquire("stacks/live", "runner-a", TTL) is not None
        listed = {e.key: e for e in backend.list()}
        assert isinstance(listed["stacks/junk"], LockUnreadable)
        assert isinstance(listed["stacks/live"], LockInfo)
        backend.force_break("stacks/live")
        with pytest.raises(LockError, match="not a shipsure lock record"):
            backend.renew("stacks/junk", "runner-a", TTL)
    finally:
        backend.force_break("stacks/junk")
        backend.close()


def test_etcd_and_vault_keys_that_are_not_lock_records_are_listed_as_unreadable(
    etcd_url: str, vault: tuple[VaultLockBackend, FakeClock]
) -> None:
    etcd = open_backend(etcd_url.replace("http://", "etcd://") + f"?prefix={PREFIX}")
    assert isinstance(etcd, EtcdLockBackend)
    try:
        key = f"{PREFIX}stacks/junk".encode()
        etcd._call("/v3/kv/put", {"key": _b64(key), "value": _b64(b"{}")}, "put", "junk")
        listed = {e.key: e for e in etcd.list()}
        assert isinstance(listed["stacks/junk"], LockUnreadable)
        with pytest.raises(LockUnreadable, match="not a shipsure lock record"):
            etcd.get("stacks/junk")
    finally:
        etcd.force_break("stacks/junk")
        etcd.close()
    backend, _ = vault
    path = f"/v1/{backend.mount}/data/{PREFIX}stacks/junk"
    assert backend.http.post(path, json={"data": {"owner": 1}}).status_code == 200
    listed = {e.key: e for e in backend.list()}
    assert isinstance(listed["stacks/junk"], LockUnreadable)
    backend.force_break("stacks/junk")
