"""Credentials from flags, environment, docker's config.json and credential helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from shipsure.errors import CouldNotRunError
from shipsure.registry import credentials as creds_module
from shipsure.registry.credentials import (
    Credentials,
    CredentialsError,
    provider_for,
    resolve_credentials,
    server_address,
)

SECRET = "Sup3r-secret-value"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(tmp_path: Path, document: object) -> dict[str, str]:
    """Write `config.json` under a DOCKER_CONFIG folder; return an environment using it."""
    folder = tmp_path / "docker"
    folder.mkdir(exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document)
    (folder / "config.json").write_text(text)
    return {"DOCKER_CONFIG": str(folder), "PATH": os.environ.get("PATH", "")}


def _helper(tmp_path: Path, name: str, script: str) -> str:
    """A `docker-credential-<name>` shell script in its own PATH folder; returns PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    program = folder / f"docker-credential-{name}"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return f"{folder}:{os.environ.get('PATH', '')}"


def test_docker_hub_uses_the_v1_index_key() -> None:
    for host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert server_address(host) == "https://index.docker.io/v1/"
    assert server_address("registry.example.com:5000") == "registry.example.com:5000"


def test_auths_base64(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"registry.example.com": {"auth": _auth("bob", SECRET)}}})
    found = resolve_credentials("registry.example.com", env=env)
    assert found is not None
    assert (found.username, found.password) == ("bob", SECRET)
    assert SECRET not in repr(found) and SECRET not in str(found)


def test_auths_keys_match_without_scheme_and_path(tmp_path: Path) -> None:
    auths = {
        "https://registry.example.com/v2/": {"username": "carol", "password": SECRET},
        "https://index.docker.io/v1/": {"auth": _auth("hubuser", SECRET)},
    }
    env = _config(tmp_path, {"auths": auths})
    found = resolve_credentials("registry.example.com", env=env)
    assert found is not None and found.username == "carol"
    hub = resolve_credentials("docker.io", env=env)
    assert hub is not None and hub.username == "hubuser"
    assert resolve_credentials("other.example.com", env=env) is None


def test_auths_identity_token(tmp_path: Path) -> None:
    entry = {"auth": _auth("dave", ""), "identitytoken": SECRET}
    env = _config(tmp_path, {"auths": {"registry.example.com": entry}})
    found = resolve_credentials("registry.example.com", env=env)
    assert found is not None and found.identity_token == SECRET
    assert SECRET not in repr(found)


def test_environment_wins_over_config_and_flags_win_over_both(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"r.example.com": {"auth": _auth("file", "x")}}})
    env |= {"SHIPSURE_USERNAME": "envuser", "SHIPSURE_PASSWORD": SECRET}
    found = resolve_credentials("r.example.com", env=env)
    assert found is not None and found.username == "envuser"
    explicit = Credentials("flaguser", "p")
    assert resolve_credentials("r.example.com", explicit=explicit, env=env) is explicit


def test_half_an_environment_pair_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="SHIPSURE_PASSWORD is not"):
        resolve_credentials("r.example.com", env={"SHIPSURE_USERNAME": "u"})


def test_credential_helper_per_host(tmp_path: Path) -> None:
    path = _helper(
        tmp_path,
        "test",
        'read host\nprintf \'{"ServerURL":"%s","Username":"eve","Secret":"' + SECRET + "\"}' "
        '"$host"\n',
    )
    env = _config(tmp_path, {"credHelpers": {"registry.example.com": "test"}})
    env["PATH"] = path
    found = resolve_credentials("registry.example.com", env=env)
    assert found is not None
    assert (found.username, found.password) == ("eve", SECRET)
    assert "docker-credential-test" in found.source


def test_creds_store_with_identity_token_and_fallback_to_auths(tmp_path: Path) -> None:
    script = (
        "read host\n"
        'if [ "$host" = "registry.example.com" ]; then\n'
        '  echo \'{"Username":"<token>","Secret":"' + SECRET + "\"}'\n"
        "else\n"
        "  echo 'credentials not found in native keychain'; exit 1\n"
        "fi\n"
    )
    env = _config(
        tmp_path,
        {"credsStore": "store", "auths": {"other.example.com": {"auth": _auth("frank", "pw")}}},
    )
    env["PATH"] = _helper(tmp_path, "store", script)
    stored = resolve_credentials("registry.example.com", env=env)
    assert stored is not None and stored.identity_token == SECRET and stored.username is None
    fallback = resolve_credentials("other.example.com", env=env)
    assert fallback is not None and fallback.username == "frank"


def test_failing_helper_is_named_without_its_output(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credHelpers": {"r.example.com": "broken"}})
    env["PATH"] = _helper(tmp_path, "broken", f"echo 'oops {SECRET}' >&2\nexit 3\n")
    with pytest.raises(CredentialsError, match="docker-credential-broken") as caught:
        resolve_credentials("r.example.com", env=env)
    assert SECRET not in str(caught.value) and "exit 3" in str(caught.value)


def test_missing_helper_is_a_clear_error(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credHelpers": {"r.example.com": "absent-helper"}})
    env["PATH"] = str(tmp_path / "empty")
    with pytest.raises(CredentialsError, match="not on PATH"):
        resolve_credentials("r.example.com", env=env)


def test_hanging_helper_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(creds_module, "HELPER_TIMEOUT_SECONDS", 0.3)
    env = _config(tmp_path, {"credHelpers": {"r.example.com": "slow"}})
    env["PATH"] = _helper(tmp_path, "slow", "exec sleep 30\n")
    with pytest.raises(CouldNotRunError, match="no answer"):
        resolve_credentials("r.example.com", env=env)


def test_malformed_config_names_the_file_not_its_content(tmp_path: Path) -> None:
    env = _config(tmp_path, '{"auths": {"r.example.com": {"auth": "' + SECRET + '"}}')
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials("r.example.com", env=env)
    assert "config.json" in str(caught.value) and SECRET not in str(caught.value)
    env = _config(tmp_path, {"auths": {"r.example.com": {"auth": "%%" + SECRET}}})
    with pytest.raises(CredentialsError, match="not base64") as bad:
        resolve_credentials("r.example.com", env=env)
    assert SECRET not in str(bad.value)


def test_no_config_is_anonymous(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "nowhere")}
    assert resolve_credentials("r.example.com", env=env) is None


def test_home_docker_config_is_the_default(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    document = {"auths": {"r.example.com": {"auth": _auth("gina", SECRET)}}}
    (tmp_path / ".docker" / "config.json").write_text(json.dumps(document))
    found = resolve_credentials("r.example.com", env={"HOME": str(tmp_path)})
    assert found is not None and found.username == "gina"


def test_provider_looks_up_once(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"r.example.com": {"auth": _auth("h", SECRET)}}})
    provide = provider_for("r.example.com", env=env)
    first = provide()
    (tmp_path / "docker" / "config.json").unlink()
    assert provide() is first
