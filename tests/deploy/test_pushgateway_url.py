"""`shipsure probe --pushgateway URL`: a Pushgateway behind basic auth (credentials in the
URL, sent as basic auth, never printed), and URLs that cannot name a Pushgateway refused
before the registry is walked. Against a real Pushgateway and a real registry."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, generate
from tests.deploy import monitoring

HTPASSWD = shutil.which("htpasswd")
PASSWORD = "s3cr:et@x"  # characters a URL must percent-encode
QUOTED = "s3cr%3Aet%40x"


def _gateway(tmp_path: Path) -> monitoring.Server:
    if monitoring.PUSHGATEWAY is None or HTPASSWD is None:
        pytest.skip("needs prometheus-pushgateway and htpasswd (apache2-utils)")
    line = subprocess.run(
        [HTPASSWD, "-nbB", "shipsure", PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    hashed = line.split(":", 1)[1]
    config = tmp_path / "web.yml"
    config.write_text(f'basic_auth_users:\n  shipsure: "{hashed}"\n')
    return monitoring.start_pushgateway(tmp_path, web_config=config)


def _pushed(gateway: monitoring.Server) -> str:
    request = urllib.request.Request(gateway.url + "/metrics")
    token = base64.b64encode(f"shipsure:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.read().decode())


@pytest.mark.slow
def test_pushgateway_behind_basic_auth(
    fresh_registry: SandboxRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate(fresh_registry.root, SyntheticSpec(repositories=1, tags=1, platforms=1, layers=1))
    gateway = _gateway(tmp_path)
    try:
        good = f"http://shipsure:{QUOTED}@127.0.0.1:{gateway.port}"
        assert main(["probe", "--pushgateway", good, fresh_registry.host]) == 0
        assert "shipsure_probe_info{" in _pushed(gateway)
        capsys.readouterr()

        wrong = f"http://shipsure:wrong-{QUOTED}@127.0.0.1:{gateway.port}"
        assert main(["probe", "--pushgateway", wrong, fresh_registry.host]) == 3
        out, err = capsys.readouterr()
        assert err == (
            f"shipsure: --pushgateway http://shipsure:***@127.0.0.1:{gateway.port}: Unauthorized\n"
        )
        assert "s3cr" not in out + err
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    "url",
    ["ftp://gateway:9091", "http://", "http://gateway:99999999", "http://u:p@gateway:x"],
)
def test_url_that_names_no_pushgateway_is_refused_first(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 9: the URL is refused before any request.
    assert main(["probe", "--pushgateway", url, "127.0.0.1:9"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("not an http:// or https:// URL with a host\n")
    assert ":p@" not in err
