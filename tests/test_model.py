"""The OCI model: digests, references parsed as docker does, manifests from raw bytes."""

from __future__ import annotations

import json

import pytest

from shipsure import mediatypes as mt
from shipsure.errors import (
    InvalidDigestError,
    InvalidReferenceError,
    ManifestError,
    UnsupportedManifestError,
)
from shipsure.model import Digest, ImageIndex, ImageManifest, Platform, Reference, parse_manifest

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/library/alpine", "docker.io", "library/alpine", "latest", None),
        ("team/app", "docker.io", "team/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/team/app:1.0", "localhost:5000", "team/app", "1.0", None),
        ("127.0.0.1:5000/a/b/c:x", "127.0.0.1:5000", "a/b/c", "x", None),
        ("registry.example.com/app", "registry.example.com", "app", "latest", None),
        (f"reg.io/app@sha256:{HEX}", "reg.io", "app", None, f"sha256:{HEX}"),
        (f"reg.io:443/app:v1@sha256:{HEX}", "reg.io:443", "app", "v1", f"sha256:{HEX}"),
        ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", None),
        ("my-reg.example/a__b/c-d.e:tag_1.2-x", "my-reg.example", "a__b/c-d.e", "tag_1.2-x", None),
    ],
)
def test_reference_parses_like_docker(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest


def test_reference_round_trips_and_identifier() -> None:
    ref = Reference.parse(f"reg.io/app:v1@sha256:{HEX}")
    assert str(ref) == f"reg.io/app:v1@sha256:{HEX}"
    assert ref.identifier == f"sha256:{HEX}"
    assert Reference.parse("reg.io/app:v1").identifier == "v1"
    assert Reference.parse("reg.io/app", default_tag=False).tag is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        " alpine",
        "Alpine",
        "reg.io/App:1",
        "app:",
        "app:-bad",
        "app@sha256:abc",
        "app@md5:" + "a" * 32,
        "reg.io//app",
        "app:" + "x" * 129,
        "reg.io/app/",
        "-reg.io/app",
        "a" * 300,
    ],
)
def test_bad_references_are_refused_with_one_line(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    assert "\n" not in str(info.value)
    assert "invalid reference" in str(info.value)


def test_digest_parse_compute_verify() -> None:
    d = Digest.of(b"hello")
    assert str(d) == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert Digest.parse(str(d)) == d
    assert d.matches(b"hello") and not d.matches(b"hellO")
    d512 = Digest.of(b"hello", "sha512")
    assert Digest.parse(str(d512)).algorithm == "sha512"
    for bad in ("sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha1:" + "a" * 40, "nodigest"):
        with pytest.raises(InvalidDigestError):
            Digest.parse(bad)


def _desc(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


def test_parse_oci_manifest_keeps_raw_bytes_and_digest() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": _desc(mt.OCI_CONFIG, b"{}"),
        "layers": [_desc(mt.OCI_LAYER_GZIP, b"layer")],
    }
    raw = json.dumps(doc, indent=3).encode()  # digest is over these bytes, not re-serialized
    m = parse_manifest(raw, None)
    assert isinstance(m, ImageManifest)
    assert m.digest == Digest.of(raw)
    assert m.raw == raw
    assert [b.digest for b in m.blobs] == [Digest.of(b"{}"), Digest.of(b"layer")]


def test_parse_docker_list_with_platforms_attestation_and_subject() -> None:
    child = _desc(
        mt.DOCKER_MANIFEST, b"c", platform={"os": "linux", "architecture": "arm", "variant": "v7"}
    )
    att = _desc(
        mt.OCI_MANIFEST,
        b"a",
        platform={"os": "unknown", "architecture": "unknown"},
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [child, att]}
    ).encode()
    idx = parse_manifest(raw, mt.DOCKER_MANIFEST_LIST)
    assert isinstance(idx, ImageIndex)
    assert str(idx.manifests[0].platform) == "linux/arm/v7"
    assert idx.manifests[1].is_attestation
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": _desc(mt.OCI_EMPTY, b"{}"),
            "layers": [],
            "subject": _desc(mt.OCI_INDEX, raw),
        }
    ).encode()
    art = parse_manifest(artifact)
    assert art.artifact_type == "application/vnd.example.sbom"
    assert art.subject is not None and art.subject.digest == Digest.of(raw)


def test_index_without_media_type_is_decided_by_shape() -> None:
    raw = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(parse_manifest(raw, "application/json"), ImageIndex)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 3}',
        b'{"schemaVersion": 2, "mediaType": "application/x-nope", "config": {}}',
        b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:12", "size": 1}}',
        b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:'
        + b"a" * 64
        + b'", "size": -1}}',
        b'{"schemaVersion": 2, "manifests": {}}',
        b'{"schemaVersion": 2}',
        b"\xff\xfe",
    ],
)
def test_malformed_manifests_raise_manifest_error(raw: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(raw)


def test_schema1_is_recognised_and_unsupported() -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode()
    with pytest.raises(UnsupportedManifestError, match="schema1"):
        parse_manifest(raw, mt.DOCKER_SCHEMA1_SIGNED)


def test_manifest_over_4_mib_is_refused() -> None:
    with pytest.raises(ManifestError, match="4 MiB"):
        parse_manifest(b" " * (mt.MAX_MANIFEST_BYTES + 1))


def test_platform_filter_matching() -> None:
    assert Platform.parse("linux/arm").matches(Platform("linux", "arm", "v7"))
    assert not Platform.parse("linux/arm/v6").matches(Platform("linux", "arm", "v7"))
    with pytest.raises(InvalidReferenceError):
        Platform.parse("linux")


def test_a_manifest_nested_deeper_than_the_parser_goes_is_invalid_not_a_crash() -> None:
    raw = b'{"schemaVersion": 2, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(ManifestError, match="nested too deep"):
        parse_manifest(raw)
