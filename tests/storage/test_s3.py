"""The S3 storage path, proven against moto's standalone S3 server (an emulator, not MinIO):
the real registry (the s3 driver of distribution 2.8 and of v3) pushes into it, shipsure
scans it, finds a fault there and re-links it."""

from __future__ import annotations

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

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import scan
from shipsure.checks.scan.options import ScanOptions
from shipsure.cli.main import main
from shipsure.sandbox import images
from shipsure.sandbox.registry import (
    FLAVOURS,
    Flavour,
    S3Settings,
    SandboxRegistry,
    missing_reason,
    registry_available,
)
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
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint of moto's S3 server, with the bucket `reg`."""
    if not MOTO.exists():
        pytest.skip("needs moto_server (moto[server])")
    work = tmp_path_factory.mktemp("s3")
    s3_port = _free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    env = {k_: v for k_, v in os.environ.items() if k_ != "AWS_CA_BUNDLE"} | CREDENTIALS
    with open(work / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [str(MOTO), "-H", "127.0.0.1", "-p", str(s3_port)], stdout=log, stderr=log, env=env
        )
    try:
        _wait(endpoint, process)
        boto3 = pytest.importorskip("boto3")
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ).create_bucket(Bucket="reg")
        yield endpoint
    finally:
        _stop(process)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(params=FLAVOURS, ids=[f"v{f}" for f in FLAVOURS])
def s3_registry(moto: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(moto endpoint, registry url, root): a real registry of either flavour storing into
    moto under its own root folder."""
    flavour: Flavour = request.param
    if not registry_available(flavour):
        pytest.skip(missing_reason(flavour))
    root = f"/reg{flavour.replace('.', '')}"
    # The s3 driver panics at start-up when AWS_CA_BUNDLE is set (registry-facts §2): the
    # sandbox never passes it on.
    with SandboxRegistry(flavour=flavour, s3=S3Settings(moto, "reg", root)) as registry:
        yield moto, registry.url, root


def test_scan_of_s3_storage_the_real_registry_wrote(
    s3_registry: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, url, root = s3_registry
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    index = images.push_index(url, "team/app", "latest", platforms=("linux/amd64", "linux/arm64"))
    storage = S3Storage("reg", root, endpoint_url=endpoint, region="us-east-1")
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
            f"s3://reg{root}",
            "--s3-endpoint",
            endpoint,
            "--s3-region",
            "us-east-1",
        ]
        assert main([*args, "--apply", "--journal", str(tmp_path / "j.jsonl")]) == 1
        assert "done" in capsys.readouterr().out
        assert http.get(f"/v2/team/app/manifests/{child}", headers=accept).status_code == 200
    assert main(args) == 0
