"""A reference whose host:port is not the registry the user thinks.

- A plain web server on the port: its 404 is no registry's answer. Nothing was checked
  there, so it is a check-error (exit 3) for verify and restore, never a missing tag
  (exit 1) or a rebuild plan; as a restore source, what it lacks was not checked, not
  "held by no source". A source's prefix is checked, and its scheme taken, at once.
- A registry serving TLS with a self-signed certificate: refused with one line naming
  the certificate and the options that fix it (--ca-file, --insecure), without retries;
  on a loopback address it is reached over HTTPS once it says it speaks only that."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from shipsure.cli.main import main
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry, registry_available


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m http.server` on a free port: 404 (an HTML page) for every /v2/ path."""
    folder = tmp_path_factory.mktemp("www")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *_args: None  # type: ignore[attr-defined,method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_verify_of_a_web_server_is_a_check_error_not_a_missing_tag(
    web_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = [f"{web_server}/team/app:1.0", f"{web_server}/team/app@sha256:{'a' * 64}"]
    assert main(["verify", "--format", "json", *refs]) == 3
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [f["kind"] for f in findings] == ["check-error", "check-error"]
    assert all("does not serve the registry API" in f["message"] for f in findings)


def test_restore_into_a_web_server_plans_nothing_and_says_it_could_not_check(
    web_server: str, registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    code = main(["restore", f"{web_server}/{repo_name}:v1", "--from", registry.host])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "rebuild" not in out and "does not serve the registry API" in out


def test_a_real_registrys_missing_tag_is_still_tag_not_found(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    assert main(["verify", "--format", "json", f"{registry.host}/{repo_name}:gone"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [f["kind"] for f in findings] == ["tag-not-found"]


# -- a registry serving TLS with a self-signed certificate ----------------------------------


class TlsRegistry(SandboxRegistry):
    """The sandbox registry with `http.tls`: a certificate no system CA vouches for."""

    def __init__(self, certificate: Path, key: Path) -> None:
        super().__init__()
        self.certificate = certificate
        self.key = key

    def _config(self) -> dict[str, object]:
        config = super()._config()
        http_section = dict(config["http"])  # type: ignore[call-overload]
        http_section["tls"] = {"certificate": str(self.certificate), "key": str(self.key)}
        return config | {"http": http_section}

    def _answers_v2(self) -> bool:
        try:
            return httpx.get(f"https://{self.host}/v2/", verify=False, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(host:port of a TLS registry on 127.0.0.1 holding team/app:v1, its certificate)."""
    if not registry_available() or shutil.which("openssl") is None:
        pytest.skip("needs docker-registry and openssl (scripts/setup.sh)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=shipsure-test"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    with TlsRegistry(cert, key) as registry:
        url = f"https://{registry.host}"
        with httpx.Client(base_url=url, verify=False, timeout=30) as client:
            images.push_image(url, "team/app", "v1", client=client)
        yield registry.host, cert


def test_verify_of_a_local_tls_registry_needs_its_ca_and_says_so_in_one_try(
    tls_registry: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    host, cert = tls_registry
    for ref in (f"{host}/team/app:v1", f"localhost:{host.rsplit(':', 1)[1]}/team/app:v1"):
        assert main(["verify", "--format", "json", ref]) == 3
        (finding,) = json.loads(capsys.readouterr().out)["findings"]
        assert finding["kind"] == "check-error"
        assert "TLS certificate not trusted" in finding["message"]
        assert "--ca-file" in finding["message"] and "attempts" not in finding["message"]
        # Spoken to over plain HTTP first (loopback), the registry's TLS-only answer moves
        # the client to HTTPS, verified with the CA given, or unverified with --insecure.
        assert main(["verify", "--ca-file", str(cert), ref]) == 0
        assert main(["verify", "--insecure", ref]) == 0
        capsys.readouterr()


def test_probe_and_retain_name_an_untrusted_certificate_in_one_line(
    tls_registry: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, cert = tls_registry
    assert main(["probe", f"https://{host}"]) == 3
    assert "TLS certificate not trusted" in capsys.readouterr().out
    assert main(["probe", "--ca-file", str(cert), host]) == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    capsys.readouterr()
    for given in (f"https://{host}", host):  # bare: plain HTTP first, then what it speaks
        retain = ["retain", "--policy", str(policy), "--registry", given]
        assert main(retain) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "TLS certificate not trusted" in err, err
        assert main([*retain, "--ca-file", str(cert)]) == 0


def test_retain_of_a_web_server_says_it_is_no_registry(
    web_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A web server answers 404 for a repository's tags list: retain said "tags of team/app:
    HTTP 404", as if the registry lacked the repository; it asks GET /v2/ first, as probe
    does, and says the host serves no registry API."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    argv = ["retain", "--policy", str(policy), "--registry", web_server]
    assert main([*argv, "--repository", "team/app"]) == 3
    # The web server logs its 404s to the same stderr: shipsure's lines are its own.
    said = [line for line in capsys.readouterr().err.splitlines() if "shipsure" in line]
    assert len(said) == 1 and "does not serve the registry API" in said[0], said


def test_restore_from_a_web_server_does_not_call_the_content_unheld(
    web_server: str, registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source on the wrong port answers 404 for everything: the lost layer is not "held
    by no source" (rebuild it) but "the source could not be checked", with the reason."""
    image = images.push_image(registry.url, repo_name, "v1")
    faults.remove_blob_data(registry.root, image.layer_digests[0])
    code = main(["restore", f"{registry.host}/{repo_name}:v1", "--from", web_server])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"registry {web_server} could not be checked" in out
    assert "does not serve the registry API" in out and "no source holds" not in out


@pytest.mark.parametrize(
    ("source", "says"),
    [("{host}/Mirror", "prefix 'Mirror' is not a repository path"), ("{host}/a//b", "'a//b'")],
)
def test_a_bad_source_prefix_is_named_before_anything_is_checked(
    source: str, says: str, registry: SandboxRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    text = source.format(host=registry.host)
    assert main(["restore", f"{registry.host}/team/app:1", "--from", text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_a_source_written_with_its_scheme_is_that_registry(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    code = main(["restore", f"{registry.host}/{repo_name}:v1", "--from", registry.url])
    assert code == 0, capsys.readouterr()
