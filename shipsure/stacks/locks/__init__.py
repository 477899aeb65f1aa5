"""Per-stack advisory locks with a TTL on backends teams already run.

`open_backend(url)` picks the backend from the URL scheme:

    file:///var/lib/shipsure/locks            JSON files in a directory (one machine)
    redis://host:6379/0                        Redis, SET NX PX (rediss:// for TLS)
    etcd://host:2379                           etcd v3 leases over HTTP (etcds:// for TLS)
    postgresql://user@host:5432/db             PostgreSQL lease table + advisory lock
    vault://host:8200/<mount>/<prefix>         Vault KV v2 check-and-set (vault+http:// plain)

Network backends keep keys under a prefix (default `shipsure/locks/`); set it with
`?prefix=...` in the URL (Vault: the path after the mount) or the `prefix` argument.
"""

from __future__ import annotations

import os
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from shipsure.errors import UsageError
from shipsure.stacks.locks.holder import HeldLock, default_owner, hold
from shipsure.stacks.locks.interface import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_TTL_SECONDS,
    SYSTEM_CLOCK,
    Clock,
    LockBackend,
    LockError,
    LockHeld,
    LockInfo,
    LockLost,
)

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_TTL_SECONDS",
    "SCHEMES",
    "HeldLock",
    "LockBackend",
    "LockError",
    "LockHeld",
    "LockInfo",
    "LockLost",
    "default_owner",
    "hold",
    "open_backend",
]

SCHEMES = (
    "file",
    "redis",
    "rediss",
    "etcd",
    "etcds",
    "postgresql",
    "postgres",
    "vault",
    "vault+http",
    "vault+https",
)


def open_backend(
    url: str, *, prefix: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> LockBackend:
    """The lock backend a URL names; UsageError (one line) for a URL we cannot use.

    `clock` matters only where the client compares times (file, PostgreSQL, Vault);
    Redis and etcd expire locks on the server.
    """
    shown = _redacted(url)
    parts = _split(url, shown)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    key_prefix = prefix if prefix is not None else query.pop("prefix", DEFAULT_KEY_PREFIX)
    # The URL without our own query parameters, for libraries that parse the rest.
    rest = urlunsplit(parts._replace(query=urlencode(query)))

    if scheme == "file":
        from shipsure.stacks.locks.file import FileLockBackend

        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"lock URL {shown}: file URLs name a local directory, not a host")
        directory = unquote(parts.path)
        if not directory:
            raise UsageError(f"lock URL {shown} names no directory (try file:///path/to/locks)")
        return FileLockBackend(directory, clock=clock)

    if scheme in ("redis", "rediss"):
        from shipsure.stacks.locks.redis import RedisLockBackend

        if not parts.hostname:
            raise UsageError(f"lock URL {shown} names no host")
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            # redis-py would ignore a database that is not a number and use 0.
            raise UsageError(f"lock URL {shown}: the path must be a database number (/0)")
        try:
            return RedisLockBackend.from_url(rest, prefix=key_prefix)
        except ValueError as exc:
            raise UsageError(f"lock URL {shown} is malformed: {exc}") from None

    if scheme in ("etcd", "etcds"):
        host = _host_port(parts, 2379, shown)
        web = "https" if scheme == "etcds" else "http"
        from shipsure.stacks.locks.etcd import EtcdLockBackend

        return EtcdLockBackend(f"{web}://{host}", prefix=key_prefix)

    if scheme in ("postgresql", "postgres"):
        from shipsure.stacks.locks.postgres import PostgresLockBackend

        return PostgresLockBackend(rest, prefix=key_prefix, clock=clock)

    if scheme in ("vault", "vault+http", "vault+https"):
        host = _host_port(parts, 8200, shown)
        mount, _, path_prefix = parts.path.strip("/").partition("/")
        if not mount:
            raise UsageError(f"lock URL {shown} names no KV v2 mount (try vault://host/secret)")
        token = os.environ.get("VAULT_TOKEN", "")
        if not token:
            raise UsageError(f"lock URL {shown}: set VAULT_TOKEN to a token that may use it")
        if prefix is None:
            key_prefix = (path_prefix.strip("/") + "/") if path_prefix else DEFAULT_KEY_PREFIX
        web = "http" if scheme == "vault+http" else "https"
        from shipsure.stacks.locks.vault import VaultLockBackend

        return VaultLockBackend(
            f"{web}://{host}",
            mount=mount,
            token=token,
            prefix=key_prefix,
            namespace=os.environ.get("VAULT_NAMESPACE") or None,
            clock=clock,
        )

    known = ", ".join(f"{name}://" for name in SCHEMES)
    if not scheme:
        raise UsageError(f"lock URL {shown} has no scheme; use one of {known}")
    raise UsageError(f"lock URL {shown} has unknown scheme {scheme!r}; use one of {known}")


def _split(url: str, shown: str) -> SplitResult:
    """`url` split, with its host and port checked: every malformed lock URL is one
    `UsageError` line (exit 2) naming it with its password masked."""
    try:
        parts = urlsplit(url)
        _ = parts.hostname, parts.port  # both raise ValueError when malformed
    except ValueError as exc:
        raise UsageError(f"lock URL {shown} is malformed: {exc}") from None
    return parts


def _host_port(parts: SplitResult, default_port: int, shown: str) -> str:
    host = parts.hostname
    if not host:
        raise UsageError(f"lock URL {shown} names no host")
    try:
        port = parts.port or default_port
    except ValueError:
        raise UsageError(f"lock URL {shown} has an invalid port") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redacted(url: str) -> str:
    """The URL without its password, for messages. Works on text `urlsplit` refuses too:
    whatever lies between the user name's `:` and the last `@` of the authority is masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for stop in "/?#":
        # A password may hold any of these unescaped; the last `@` still ends the userinfo.
        at = rest.rfind("@")
        index = rest.find(stop, at + 1 if at >= 0 else 0)
        if index >= 0:
            authority_end = min(authority_end, index)
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at_sign, host = authority.rpartition("@")
    if not at_sign or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{tail}"
