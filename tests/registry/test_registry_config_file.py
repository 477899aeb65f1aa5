"""A malformed docker config.json is bad input (exit 2, one line naming the file), also
when it is first read in the middle of a walk, on the registry's first challenge."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry

from .conftest import TokenAuthRegistry

SECRET = "Sup3r-secret-value"


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ('{"auths": {', "not valid JSON at line 1"),
        ("[1, 2]", "not a JSON object"),
        ('{"auths": "x"}', "auths is not an object"),
        ('{"credHelpers": "x"}', "credHelpers is not an object"),
        (b"\xff\xfe{}", "not valid JSON"),
        (json.dumps({"auths": {"127.0.0.1": {"auth": "!!" + SECRET}}}), "not base64"),
    ],
)
def test_malformed_docker_config_exits_2_naming_the_file(
    document: str | bytes,
    says: str,
    token_registry: TokenAuthRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(document if isinstance(document, bytes) else document.encode())
    if "127.0.0.1" in config.read_text("utf-8", "replace"):
        host = token_registry.host.split(":")[0]
        port = token_registry.host.split(":")[1]
        auth = "!!" + base64.b64encode(SECRET.encode()).decode()[:5]
        config.write_text(json.dumps({"auths": {f"{host}:{port}": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("SHIPSURE_USERNAME", raising=False)
    monkeypatch.delenv("SHIPSURE_PASSWORD", raising=False)
    code = main(["verify", "--format", "json", f"{token_registry.host}/t/config-file:v1"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert str(config) in err and says in err
    assert SECRET not in err


def test_anonymous_registry_never_reads_a_malformed_config(
    registry: SandboxRegistry,
    repo_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images.push_image(registry.url, repo_name, "v1", layers=1)
    (tmp_path / "config.json").write_text("{not json")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert main(["verify", f"{registry.host}/{repo_name}:v1"]) == 0
    capsys.readouterr()
