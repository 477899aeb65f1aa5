"""registry/push.py against a real registry: monolithic and chunked uploads, mounts,
and a manifest refused while what it references is missing; and refusals no registry
gives on demand (429, 503), from the mock wire."""

from __future__ import annotations

import io
import json

import pytest

from shipsure import mediatypes as mt
from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.registry.interface import (
    AuthError,
    NotFoundError,
    ProtocolError,
    RegistryError,
    UnavailableError,
)
from shipsure.registry.mock_wire import MockAnswer, MockWire
from shipsure.registry.push import Pusher, PushError
from shipsure.registry.wire import Request
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry
from tests.registry.conftest import no_sleep_policy


@pytest.mark.both_registries
def test_chunked_and_monolithic_uploads(registry: SandboxRegistry, repo_name: str) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    digest = Digest.of(data)
    with open_registry(registry.host) as client:
        Pusher(client, chunk_size=3000).upload_blob(repo_name, digest, len(data), io.BytesIO(data))
        read = client.read_blob(repo_name, digest, limit=len(data))
        assert (read.size, read.digest) == (len(data), digest)
        small = b"small blob"
        Pusher(client).upload_blob(repo_name, Digest.of(small), len(small), io.BytesIO(small))
        assert client.head_blob(repo_name, Digest.of(small)).size == len(small)


@pytest.mark.both_registries
def test_a_wrong_digest_is_refused(registry: SandboxRegistry, repo_name: str) -> None:
    with open_registry(registry.host) as client, pytest.raises(PushError, match="DIGEST_INVALID"):
        Pusher(client).upload_blob(repo_name, Digest.of(b"other"), 4, io.BytesIO(b"data"))


@pytest.mark.both_registries
def test_delete_manifest_says_deleted_gone_or_why_refused(
    registry: SandboxRegistry, repo_name: str
) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    with open_registry(registry.host) as client:
        pusher = Pusher(client)
        assert pusher.delete_manifest(repo_name, image.digest) is True
        assert pusher.delete_manifest(repo_name, image.digest) is False  # 404: not there
        with pytest.raises(NotFoundError):
            client.head_manifest(repo_name, "v1")  # distribution dropped its tag too
    with SandboxRegistry(registry.root, flavour=registry.flavour, readonly=True) as readonly:
        kept = images.push_image(registry.url, repo_name, "v2")
        with open_registry(readonly.host) as client, pytest.raises(PushError) as refused:
            Pusher(client).delete_manifest(repo_name, kept.digest)
    assert refused.value.status == 405
    assert refused.value.note == "the registry allows only GET, HEAD: is it in read-only mode?"
    assert f"DELETE {repo_name}@{kept.digest}: HTTP 405" in str(refused.value)


@pytest.mark.both_registries
def test_mount_links_without_moving_bytes(registry: SandboxRegistry, repo_name: str) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    layer = Digest.parse(image.layer_digests[0])
    with open_registry(registry.host) as client:
        pusher = Pusher(client)
        assert pusher.mount_blob(f"{repo_name}-copy", layer, repo_name)
        assert client.head_blob(f"{repo_name}-copy", layer).size == image.layers[0].size
        # Nothing to mount from: declined, and the opened session is cancelled.
        assert not pusher.mount_blob(f"{repo_name}-copy", Digest.of(b"nope"), repo_name)


@pytest.mark.both_registries
def test_manifest_refused_until_its_blobs_are_there(
    registry: SandboxRegistry, repo_name: str
) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    with open_registry(registry.host) as client:
        pusher = Pusher(client)
        other = f"{repo_name}-new"
        with pytest.raises(PushError, match=r"MANIFEST_BLOB_UNKNOWN|BLOB_UNKNOWN"):
            pusher.put_manifest(other, image.digest, image.media_type, image.raw)
        with pytest.raises(NotFoundError):
            client.get_manifest(other, image.digest)
        for blob in [image.config, *image.layers]:
            data = blob.data
            pusher.upload_blob(other, Digest.parse(blob.digest), len(data), io.BytesIO(data))
        pusher.put_manifest(other, image.digest, image.media_type, image.raw)
        assert client.get_manifest(other, image.digest).raw == image.raw


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, NotFoundError),
        (401, AuthError),
        (403, AuthError),
        (429, UnavailableError),
        (503, UnavailableError),
        (400, PushError),
    ],
)
def test_a_refused_write_is_told_as_a_refused_read(status: int, error: type[RegistryError]) -> None:
    """Writes and reads name a refusal alike: one error family per status, and the
    registry's error code in the message; only the catch-all differs (PushError for a
    write, ProtocolError for a read)."""
    body = json.dumps({"errors": [{"code": "SOME_CODE"}]}).encode()

    def handler(request: Request) -> MockAnswer:
        if request.url.endswith("/v2/"):
            return MockAnswer(200)
        return MockAnswer(status, [("Content-Type", "application/json")], body)

    wire = MockWire(handler)
    policy = no_sleep_policy(0)[0]
    # A 401 names the credentials tried (none here), on a write as on a read.
    tail = r" \(no credentials for 127\.0\.0\.1:5000: .*\)$" if status == 401 else "$"
    with open_registry("127.0.0.1:5000", transport=wire, retries=policy) as registry:
        with pytest.raises(error, match=f"PUT manifest team/app:v1: HTTP {status} SOME_CODE{tail}"):
            Pusher(registry).put_manifest("team/app", "v1", mt.OCI_MANIFEST, b"{}")
        read_error = ProtocolError if error is PushError else error
        with pytest.raises(read_error, match=f"HTTP {status} SOME_CODE{tail}") as read:
            registry.get_manifest("team/app", "v1")
        assert not isinstance(read.value, PushError)
