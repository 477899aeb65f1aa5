"""gc-check on S3 (moto's standalone server, an emulator; not MinIO): the same prediction as
on a local disk, and the real 2.8 collector running on the bucket deletes exactly those keys."""

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

from shipsure.gc.collect import predict
from shipsure.gc.tree import GCTree
from shipsure.sandbox.registry import REGISTRY_BINARY, registry_available
from shipsure.storage.filesystem import FilesystemStorage

from . import seed

MOTO = Path(sys.executable).with_name("moto_server")
KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[str]:
    if not MOTO.exists() or not registry_available():
        pytest.skip("needs moto_server (moto[server]) and docker-registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"} | KEYS
    with open(tmp_path / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_prediction_on_s3_equals_the_real_collector(
    moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")
    from shipsure.storage.s3 import S3Storage

    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "storage"
    seed.seed(root, "tag-folders-deleted")
    client = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    client.create_bucket(Bucket="reg")
    before = seed.files(root)
    for rel in before:
        client.put_object(Bucket="reg", Key=f"reg/{rel}", Body=(root / rel).read_bytes())
    storage = S3Storage("reg", "/reg", endpoint_url=moto, region="us-east-1")
    on_s3 = predict(GCTree(storage), 2, True)
    on_disk = predict(GCTree(FilesystemStorage(root)), 2, True)
    assert on_s3.blobs == on_disk.blobs and on_s3.manifest_keys == on_disk.manifest_keys
    config = tmp_path / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": "0.1",
                "storage": {
                    "s3": {
                        "accesskey": "test",
                        "secretkey": "test",
                        "region": "us-east-1",
                        "regionendpoint": moto,
                        "bucket": "reg",
                        "rootdirectory": "/reg",
                        "secure": False,
                        "v4auth": True,
                    }
                },
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "AWS_CA_BUNDLE" and not k.startswith("REGISTRY_")
    }
    done = subprocess.run(
        [str(REGISTRY_BINARY), "garbage-collect", "-m", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    after = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="reg", Prefix="reg/"):
        after.update(item["Key"][len("reg/") :] for item in page.get("Contents", []))
    assert before - after == seed.predicted_files(before, on_s3)
    shutil.rmtree(root)
