"""The S3 storage path, proven against moto's standalone S3 server (an emulator, not MinIO):
the real registry (distribution 2.8's s3 driver) pushes into it, shipsure scans it, finds a
fault there and re-links it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipsure.checks.scan import ScanOptions, scan
from shipsure.checks.scan import kinds as k
from shipsure.cli.main import main
from shipsure.sandbox import images
from shipsure.sandbox.registry import REGISTRY_BINARY, registry_available
from shipsure.storage.s3 import S3Storage

MOTO = Path(sys.executable).with_name("moto_server")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url} exited"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def s3_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(moto endpoint, registry url): a real registry storing into moto under /reg."""
    if not MOTO.exists() or not registry_available():
        pytest.skip("needs moto_server (moto[server]) and docker-registry")
    work = tmp_path_factory.mktemp("s3")
    s3_port, reg_port = _free_port(), _free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    env = {k_: v for k_, v in os.environ.items() if k_ != "AWS_CA_BUNDLE"} | CREDENTIALS
    with open(work / "moto.log", "wb") as log:
        moto = subprocess.Popen(
            [str(MOTO), "-H", "127.0.0.1", "-p", str(s3_port)], stdout=log, stderr=log, env=env
        )
    try:
        _wait(endpoint, moto)
        boto3 = pytest.importorskip("boto3")
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ).create_bucket(Bucket="reg")
        config = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "s3": {
                    "accesskey": "test",
                    "secretkey": "test",
                    "region": "us-east-1",
                    "regionendpoint": endpoint,
                    "bucket": "reg",
                    "rootdirectory": "/reg",
                    "secure": False,
                    "v4auth": True,
                },
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{reg_port}", "secret": "s3-test"},
        }
        (work / "config.yml").write_text(json.dumps(config))
        with open(work / "registry.log", "wb") as log:
            # The s3 driver panics at start-up when AWS_CA_BUNDLE is set (registry-facts §2).
            registry = subprocess.Popen(
                [str(REGISTRY_BINARY), "serve", str(work / "config.yml")],
                stdout=log,
                stderr=log,
                env={k_: v for k_, v in env.items() if not k_.startswith("REGISTRY_")},
            )
        try:
            _wait(f"http://127.0.0.1:{reg_port}/v2/", registry)
            yield endpoint, f"http://127.0.0.1:{reg_port}"
        finally:
            _stop(registry)
    finally:
        _stop(moto)
        shutil.rmtree(work, ignore_errors=True)


def test_scan_of_s3_storage_the_real_registry_wrote(
    s3_registry: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, url = s3_registry
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    index = images.push_index(url, "team/app", "latest", platforms=("linux/amd64", "linux/arm64"))
    storage = S3Storage("reg", "/reg", endpoint_url=endpoint, region="us-east-1")
    options = ScanOptions(verify_content=True, recheck_delay=0)
    clean = scan(storage, options)
    assert clean.findings == []
    assert clean.checked["revisions"] == 3 and clean.checked["tags"] == 1

    child = index.children[1].digest
    storage.remove_tree(
        f"docker/registry/v2/repositories/team/app/_manifests/revisions/sha256/{child[7:]}"
    )
    broken = scan(storage, options)
    assert [(f.kind, f.repository, f.digest) for f in broken.findings] == [
        (k.INDEX_CHILD_RELINKABLE, "team/app", child)
    ]
    with httpx.Client(base_url=url, timeout=10) as http:
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        assert http.get(f"/v2/team/app/manifests/{child}", headers=accept).status_code == 404
        args = [
            "scan",
            "--recheck-delay=0",
            "s3://reg/reg",
            "--s3-endpoint",
            endpoint,
            "--s3-region",
            "us-east-1",
        ]
        assert main([*args, "--apply", "--journal", str(tmp_path / "j.jsonl")]) == 1
        assert "done" in capsys.readouterr().out
        assert http.get(f"/v2/team/app/manifests/{child}", headers=accept).status_code == 200
    assert main(args) == 0
