"""Locks in HashiCorp Vault's KV v2 engine, made safe by check-and-set.

KV v2 keeps a version number per path and accepts a write only if `options.cas` matches
it. That gives every step exactly one winner:

- acquire: write with cas=0, which succeeds only if the path has no version at all;
- takeover: read version N and its holder record; if the record is expired (or deleted),
  write with cas=N; of several contenders only the first such write succeeds;
- renew: read version N, check we own it, write with cas=N;
- release: delete the path's *metadata*. A soft delete (DELETE .../data/...) keeps the
  version count, so the next cas=0 would fail and every later acquire would need the
  takeover path.

Vault does not enforce a TTL: the record carries `expires_at` and clients compare it with
their clock. Vault has no conditional delete either, so release deletes the metadata only
while our record has time left; a nearly expired lock is released by writing an expired
record with cas=N instead, which cannot remove a lock someone else took over meanwhile.
"""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote

import httpx

from shipsure.stacks.locks.interface import (
    SYSTEM_CLOCK,
    Clock,
    LockError,
    LockInfo,
    LockLost,
    LockUnreadable,
)
from shipsure.stacks.locks.record import (
    NOT_A_RECORD,
    NotALockRecord,
    checked_key,
    info_from_fields,
    lost_message,
    new_token,
    record_fields,
)

TIMEOUT_SECONDS = 10.0
# Release by deleting metadata only with at least this much of the lock left, so nobody
# can take it over between our read and our delete, even with clocks a little apart.
RELEASE_MARGIN_SECONDS = 10.0
# acquire retries when the path changes between its failed cas=0 and its read.
ACQUIRE_ATTEMPTS = 3
# How deep `list` follows folders under the prefix.
MAX_LIST_DEPTH = 8
CAS_MISMATCH = "check-and-set parameter did not match the current version"


class CasMismatch(Exception):
    """A check-and-set write lost: the path's version is not the one we named."""


class VaultLockBackend:
    """Paths `<mount>/data/<prefix><key>` holding the lock record."""

    def __init__(
        self,
        address: str,
        mount: str,
        token: str,
        prefix: str,
        namespace: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.mount = mount.strip("/")
        self.prefix = prefix
        self.clock = clock
        headers = {"X-Vault-Token": token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        self.http = httpx.Client(
            base_url=self.address, headers=headers, timeout=TIMEOUT_SECONDS, transport=transport
        )

    def __repr__(self) -> str:
        return f"VaultLockBackend({self.address!r}, mount={self.mount!r}, prefix={self.prefix!r})"

    # -- the protocol -------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl: float, note: str = "") -> LockInfo | None:
        for _ in range(ACQUIRE_ATTEMPTS):
            now = self.clock()
            info = LockInfo(key, owner, now, now + ttl, note, new_token())
            try:
                self._write(key, info, cas=0, action="acquire")
                return info
            except CasMismatch:
                pass
            version, current = self._read(key, "acquire")
            if version == 0:
                continue  # released between our write and our read: try cas=0 again
            if current is not None and not current.is_stale(self.clock()):
                return None
            try:
                self._write(key, info, cas=version, action="take over")
                return info
            except CasMismatch:
                return None  # another contender took it over first
        return None

    def renew(self, key: str, owner: str, ttl: float, token: str = "") -> LockInfo:
        version, current = self._read(key, "renew")
        now = self.clock()
        if current is None or not current.held_by(owner, token) or current.is_stale(now):
            raise LockLost(lost_message(key, owner, current))
        info = LockInfo(key, owner, current.acquired_at, now + ttl, current.note, current.token)
        try:
            self._write(key, info, cas=version, action="renew")
        except CasMismatch:
            raise LockLost(f"lock {key!r} of {owner} was taken over while renewing") from None
        return info

    def release(self, key: str, owner: str, token: str = "") -> bool:
        version, current = self._read(key, "release")
        if current is None or not current.held_by(owner, token):
            return False
        now = self.clock()
        if current.expires_at - now > RELEASE_MARGIN_SECONDS:
            self._delete_metadata(key, "release")
            return True
        # Too close to expiry to delete unconditionally: write an ownerless, expired
        # record under cas instead; readers treat it as free.
        expired = LockInfo(key, "", now, now, "released")
        try:
            self._write(key, expired, cas=version, action="release")
        except CasMismatch:
            return False
        return True

    def get(self, key: str) -> LockInfo | None:
        _, current = self._read(key, "read")
        return current

    def list(self) -> list[LockInfo | LockUnreadable]:
        found: list[LockInfo | LockUnreadable] = []
        for key in self._list_keys("", 0):
            try:
                info = self.get(key)
            except LockUnreadable as exc:
                found.append(exc)
                continue
            if info is not None:
                found.append(info)
        return sorted(found, key=lambda info: info.key)

    def force_break(self, key: str) -> bool:
        try:
            _, current = self._read(key, "break")
            existed = current is not None
        except LockUnreadable:
            existed = True  # whatever it holds, breaking removes it
        self._delete_metadata(key, "break")
        return existed

    def close(self) -> None:
        self.http.close()

    # -- Vault requests ------------------------------------------------------------------

    def _path(self, kind: str, key: str) -> str:
        if kind == "data":
            checked_key(key)
        return f"/v1/{quote(self.mount)}/{kind}/{quote(self.prefix + key)}"

    def _request(self, method: str, path: str, action: str, key: str, **kw: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise LockError(
                f"cannot {action} lock {key!r} in Vault at {self.address}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _fail(self, response: httpx.Response, action: str, key: str) -> LockError:
        errors = _errors(response)
        reason = "; ".join(errors) if errors else response.reason_phrase
        if response.status_code == 403:
            reason = f"permission denied (check VAULT_TOKEN and its policy): {reason}"
        return LockError(
            f"cannot {action} lock {key!r} in Vault at {self.address}: "
            f"HTTP {response.status_code}: {reason}"
        )

    def _read(self, key: str, action: str) -> tuple[int, LockInfo | None]:
        """(current version or 0 if none, live record or None if deleted/released)."""
        response = self._request("GET", self._path("data", key), action, key)
        if response.status_code not in (200, 404):
            raise self._fail(response, action, key)
        body = _json(response)
        data = body.get("data") if isinstance(body.get("data"), dict) else None
        if response.status_code == 404 and data is None:
            return 0, None  # no such path (Vault answers 404 with no data)
        if data is None:
            raise self._fail(response, action, key)
        metadata = data.get("metadata") or {}
        version = int(metadata.get("version") or 0)
        record = data.get("data")
        # 404 with metadata: the latest version is soft-deleted; treat as free to take.
        if response.status_code == 404 or not isinstance(record, dict):
            return version, None
        try:
            info = info_from_fields(record, key)
        except NotALockRecord:
            raise LockUnreadable(
                f"Vault path {self.mount}/{self.prefix + key} is {NOT_A_RECORD}", key
            ) from None
        if not info.owner:
            return version, None  # a released record (see release)
        return version, info

    def _write(self, key: str, info: LockInfo, cas: int, action: str) -> None:
        body = {"options": {"cas": cas}, "data": record_fields(info)}
        response = self._request("POST", self._path("data", key), action, key, json=body)
        if response.status_code in (200, 204):
            return
        if response.status_code == 400 and any(CAS_MISMATCH in e for e in _errors(response)):
            raise CasMismatch()
        raise self._fail(response, action, key)

    def _delete_metadata(self, key: str, action: str) -> None:
        response = self._request("DELETE", self._path("metadata", key), action, key)
        if response.status_code not in (200, 204, 404):
            raise self._fail(response, action, key)

    def _list_keys(self, folder: str, depth: int) -> builtins.list[str]:
        response = self._request("LIST", self._path("metadata", folder), "list", folder + "*")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise self._fail(response, "list", folder + "*")
        data = _json(response).get("data") or {}
        keys: builtins.list[str] = []
        for name in data.get("keys") or []:
            if not isinstance(name, str):
                continue
            if name.endswith("/"):
                if depth < MAX_LIST_DEPTH:
                    keys.extend(self._list_keys(folder + name, depth + 1))
            else:
                keys.append(folder + name)
        return keys


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _errors(response: httpx.Response) -> list[str]:
    errors = _json(response).get("errors")
    return [str(e) for e in errors] if isinstance(errors, list) else []
