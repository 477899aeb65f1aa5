"""verify and probe against a registry that asks for basic auth (htpasswd): no credentials,
refused ones and docker's config.json. A 401 says which (none found, and where they could
come from; or whose were refused), exits 3, and no output format ever holds the password."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest

from shipsure.cli.main import main
from shipsure.sandbox import images
from tests.conftest import HtpasswdRegistry

FORMATS = {"verify": ["text", "json"], "probe": ["text", "json", "prometheus"]}


@pytest.fixture
def pushed(htpasswd_registry: HtpasswdRegistry, repo_name: str) -> str:
    registry = htpasswd_registry.registry
    auth = (htpasswd_registry.username, htpasswd_registry.password)
    with httpx.Client(base_url=registry.url, auth=auth, timeout=30) as client:
        images.push_image(registry.url, repo_name, "v1", client=client)
    return f"{registry.host}/{repo_name}:v1"


def _outputs(
    target: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> list[tuple[int, str, bool]]:
    """(exit code, stdout + stderr, whether the format carries messages) per command and
    format: Prometheus text holds metrics (`auth_accepted 0`), not messages."""
    seen = []
    for command, formats in FORMATS.items():
        for fmt in formats:
            code = main([command, "--format", fmt, target[command]])
            out, err = capsys.readouterr()
            seen.append((code, out + err, fmt != "prometheus"))
    return seen


def test_a_401_says_whether_credentials_were_missing_or_refused(
    htpasswd_registry: HtpasswdRegistry,
    pushed: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = htpasswd_registry.registry.host
    target = {"verify": pushed, "probe": host}
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("SHIPSURE_USERNAME", raising=False)
    monkeypatch.delenv("SHIPSURE_PASSWORD", raising=False)
    for code, text, says in _outputs(target, capsys):
        assert code == 3
        assert not says or ("no credentials for" in text and "docker login" in text), text

    wrong = "not-" + htpasswd_registry.password
    monkeypatch.setenv("SHIPSURE_USERNAME", htpasswd_registry.username)
    monkeypatch.setenv("SHIPSURE_PASSWORD", wrong)
    for code, text, says in _outputs(target, capsys):
        assert code == 3
        assert not says or "credentials from environment SHIPSURE_USERNAME refused" in text
        assert wrong not in text

    monkeypatch.delenv("SHIPSURE_USERNAME")
    monkeypatch.delenv("SHIPSURE_PASSWORD")
    pair = f"{htpasswd_registry.username}:{htpasswd_registry.password}".encode()
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": base64.b64encode(pair).decode()}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    for code, text, _says in _outputs(target, capsys):
        assert code == 0, text
        assert htpasswd_registry.password not in text
        assert base64.b64encode(pair).decode() not in text

    monkeypatch.setattr("sys.stdin", io.StringIO(wrong + "\n"))
    user = ["--username", htpasswd_registry.username, "--password-stdin"]
    code = main(["verify", *user, pushed])
    text = "".join(capsys.readouterr())
    assert code == 3 and "credentials from --username refused" in text and wrong not in text
