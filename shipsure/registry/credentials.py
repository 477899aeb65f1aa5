"""Registry credentials from the places docker looks, in docker's order.

Order, first match wins:
1. explicit: `--username` with `--password-stdin` (the CLI builds them);
2. environment: `SHIPSURE_USERNAME` and `SHIPSURE_PASSWORD` (both or neither);
3. docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
   `credHelpers[<host>]`, then `credsStore`, then `auths[<host>]` — the helper programs
   `docker-credential-<name> get` are run with the server address on stdin.

Secrets never appear in a message, a log line or a `repr`; errors name the file, the host
and the helper, never the value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipsure.errors import BadInputError, CouldNotRunError

ENV_USERNAME = "SHIPSURE_USERNAME"
ENV_PASSWORD = "SHIPSURE_PASSWORD"

# docker keeps Docker Hub's credentials under its v1 index address, not under docker.io.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# Where credentials could come from, for the message of a registry that asked for none.
NO_CREDENTIALS_HINT = (
    f"give them with --username and --password-stdin, {ENV_USERNAME}/{ENV_PASSWORD}, "
    "or docker login"
)

HELPER_TIMEOUT_SECONDS = 15.0
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
# docker-credential-helpers' "not found" message (credentials/error.go).
_HELPER_NOT_FOUND = "credentials not found in native keychain"
# A helper returns this username when the secret is an identity (refresh) token.
_IDENTITY_TOKEN_USERNAME = "<token>"


class CredentialsError(BadInputError):
    """A credentials source exists but is unusable (malformed file, failing helper)."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username with a password, or an identity token (docker's OAuth refresh token).

    `source` says where they came from, for messages; it never holds a secret.
    """

    username: str | None
    password: str | None = None
    identity_token: str | None = None
    source: str = "explicit"

    def __repr__(self) -> str:
        secret = "identity token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {secret}=<hidden>, source={self.source!r})"

    __str__ = __repr__


CredentialProvider = Callable[[], "Credentials | None"]


def server_address(host: str) -> str:
    """The key docker files credentials under for a registry host."""
    name = normalize_host(host)
    return DOCKER_HUB_SERVER if name in _DOCKER_HUB_HOSTS else name


def normalize_host(address: str) -> str:
    """docker's `ConvertToHostname`: drop the scheme and any path; keep host and port."""
    for prefix in ("http://", "https://"):
        if address.startswith(prefix):
            address = address[len(prefix) :]
            break
    return address.split("/", 1)[0]


def from_environment(env: Mapping[str, str]) -> Credentials | None:
    username, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if not username and not password:
        return None
    if not username or not password:
        missing = ENV_PASSWORD if username else ENV_USERNAME
        present = ENV_USERNAME if username else ENV_PASSWORD
        raise CredentialsError(f"{present} is set but {missing} is not: set both or neither")
    return Credentials(username, password, source=f"environment {ENV_USERNAME}")


def docker_config_path(env: Mapping[str, str]) -> Path:
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def from_docker_config(
    host: str, path: Path, *, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """Credentials for `host` from one docker `config.json`; None when it has none."""
    config = _load_config(path)
    if config is None:
        return None
    address = server_address(host)
    helpers = config.get("credHelpers") or {}
    if not isinstance(helpers, dict):
        raise CredentialsError(f"{path}: credHelpers is not an object")
    helper = _lookup(helpers, address)
    if isinstance(helper, str) and helper:
        return run_helper(helper, address, env=env)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = run_helper(store, address, env=env)
        if found is not None:
            return found
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise CredentialsError(f"{path}: auths is not an object")
    entry = _lookup(auths, address)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise CredentialsError(f"{path}: auths entry for {address} is not an object")
    return _from_auth_entry(entry, f"{path}: auths entry for {address}")


def _load_config(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise CredentialsError(f"{path}: over {_MAX_CONFIG_BYTES} bytes, not a docker config")
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # The position only: the message of a JSON error can quote the file's text.
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise CredentialsError(f"{path}: not valid JSON{where}") from None
    if not isinstance(config, dict):
        raise CredentialsError(f"{path}: not a JSON object")
    return config


def _lookup(table: Mapping[str, Any], address: str) -> Any:
    """docker matches keys exactly first, then by hostname with scheme and path dropped."""
    if address in table:
        return table[address]
    wanted = normalize_host(address)
    for key, value in table.items():
        if normalize_host(key) == wanted:
            return value
    return None


def _from_auth_entry(entry: Mapping[str, Any], where: str) -> Credentials | None:
    username, password = entry.get("username"), entry.get("password")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"{where}: 'auth' is not base64 of user:password") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialsError(f"{where}: 'auth' is not base64 of user:password")
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(
            username if isinstance(username, str) else None, identity_token=token, source=where
        )
    if isinstance(username, str) and username and isinstance(password, str):
        return Credentials(username, password, source=where)
    return None


def run_helper(
    name: str, address: str, *, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """Run `docker-credential-<name> get` with `address` on stdin; None when it has none."""
    # Imported here: most runs never call a helper, and every run would pay the import.
    import subprocess

    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(
            [program, "get"],
            input=address.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT_SECONDS,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialsError(
            f"credential helper {program} (for {address}) is not on PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise CouldNotRunError(
            f"credential helper {program} gave no answer for {address} "
            f"within {HELPER_TIMEOUT_SECONDS:g} s"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"cannot run credential helper {program}: {exc.strerror}") from None
    if done.returncode != 0:
        if _HELPER_NOT_FOUND in done.stdout.decode(errors="replace") + done.stderr.decode(
            errors="replace"
        ):
            return None
        # Its output is not quoted: a failing helper may still print part of a secret.
        raise CredentialsError(
            f"credential helper {program} failed for {address} (exit {done.returncode})"
        )
    try:
        answer = json.loads(done.stdout)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CredentialsError(f"credential helper {program} did not answer JSON") from None
    if not isinstance(answer, dict):
        raise CredentialsError(f"credential helper {program} did not answer a JSON object")
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    source = f"credential helper {program}"
    if username == _IDENTITY_TOKEN_USERNAME:
        return Credentials(None, identity_token=secret, source=source)
    if not isinstance(username, str) or not username:
        return None
    return Credentials(username, secret, source=source)


def resolve_credentials(
    host: str,
    *,
    explicit: Credentials | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The first credentials found for `host`, in docker's order; None for anonymous."""
    if explicit is not None:
        return explicit
    environment = os.environ if env is None else env
    found = from_environment(environment)
    if found is not None:
        return found
    return from_docker_config(host, docker_config_path(environment), env=env)


def provider_for(
    host: str,
    *,
    explicit: Credentials | None = None,
    env: Mapping[str, str] | None = None,
) -> CredentialProvider:
    """Defer the look-up until a registry first asks for credentials, then remember it:
    anonymous registries never run a helper or read a broken config file."""
    cache: list[Credentials | None] = []

    def provide() -> Credentials | None:
        if not cache:
            cache.append(resolve_credentials(host, explicit=explicit, env=env))
        return cache[0]

    return provide
