"""The registry options every registry command shares, and open_registry's endpoints."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import httpx
import pytest

from shipsure.cli.main import main
from shipsure.cli.registry_options import add_registry_options, registry_from_args
from shipsure.errors import BadInputError, UsageError
from shipsure.registry import open_registry, resolve_endpoint
from shipsure.sandbox.registry import SandboxRegistry


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_registry_options(parser)
    return parser.parse_args(list(argv))


def test_password_is_read_from_stdin_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.StringIO("pa55word\n")
    monkeypatch.setattr("sys.stdin", stdin)
    args = _parse("--username", "alice", "--password-stdin")
    with registry_from_args(args, "registry.example.com") as first:
        assert first.host == "registry.example.com"
    with registry_from_args(args, "other.example.com"):
        pass
    assert stdin.read() == ""  # consumed once, reused for the second registry
    assert "pa55word" not in repr(first)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--username", "alice"], "needs --password-stdin"),
        (["--password-stdin"], "needs --username"),
    ],
)
def test_half_credentials_are_usage_errors(argv: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        registry_from_args(_parse(*argv), "registry.example.com")


def test_empty_password_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(UsageError, match="empty"):
        registry_from_args(_parse("--username", "a", "--password-stdin"), "r.example.com")


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--timeout", "x"], ["--concurrency", "0"]])
def test_bad_numbers_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _parse(*argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "must be" in err or "not a" in err


def test_cli_reports_half_credentials_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "--username", "alice", "localhost:5000/team/app:v1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--password-stdin" in err


def test_cli_unreachable_registry_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["verify", "--timeout", "1", f"127.0.0.1:{port}/team/app:v1"])
    assert code == 3
    assert "Traceback" not in capsys.readouterr().err


def test_ca_file_that_is_not_a_bundle(tmp_path: object) -> None:
    with pytest.raises(BadInputError, match="--ca-file"):
        open_registry("registry.example.com", ca_file="/nonexistent/ca.pem")


def test_ca_file_with_no_certificate_is_named_plainly(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(BadInputError, match=r"ca\.pem: not a PEM certificate bundle$"):
        open_registry("registry.example.com", ca_file=str(not_pem))


@pytest.mark.parametrize(
    ("host", "insecure", "base", "probe"),
    [
        ("registry.example.com", False, "https://registry.example.com", False),
        ("registry.example.com:5000", True, "https://registry.example.com:5000", True),
        ("localhost:5000", False, "http://localhost:5000", False),
        ("127.0.0.7:5000", False, "http://127.0.0.7:5000", False),
        ("[::1]:5000", False, "http://[::1]:5000", False),
        ("docker.io", False, "https://registry-1.docker.io", False),
        ("http://registry.example.com", True, "http://registry.example.com", False),
        ("https://localhost:5443", False, "https://localhost:5443", False),
    ],
)
def test_endpoints(host: str, insecure: bool, base: str, probe: bool) -> None:
    endpoint = resolve_endpoint(host, insecure=insecure)
    assert (endpoint.base_url, endpoint.probe_scheme) == (base, probe)


@pytest.mark.parametrize("host", ["ftp://r.example.com", "r.example.com/path", "bad host", ""])
def test_bad_hosts(host: str) -> None:
    with pytest.raises(BadInputError):
        resolve_endpoint(host)


def test_plain_http_to_a_remote_host_needs_insecure() -> None:
    with pytest.raises(UsageError, match="--insecure"):
        resolve_endpoint("http://registry.example.com")


def test_insecure_probes_https_then_falls_back_to_plain_http() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.scheme} {request.url.path}")
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    with open_registry("registry.example.com", insecure=True, transport=transport) as r:
        r.ping()
        r.ping()
        assert r.base_url == "http://registry.example.com"
    assert seen == ["https /v2/", "http /v2/", "http /v2/"]


def test_loopback_registry_needs_no_flags(registry: SandboxRegistry) -> None:
    with open_registry(registry.host) as plain, open_registry(f"http://{registry.host}") as same:
        plain.ping()
        same.ping()
