"""Build deterministic sample images and push them over the distribution HTTP API.

Plain httpx on purpose: tests of shipsure's registry client must not use that client to
set up the world. Every function returns dataclasses recording each digest it pushed, so
tests assert exact digests rather than "something failed".

Content is a pure function of the seed: the same seed gives the same layer, config and
manifest bytes, so two pushes with a shared seed share blobs. Layers are real gzip'd tar
files; configs are valid OCI/Docker image configs whose `rootfs.diff_ids` are the sha256 of
the uncompressed tars.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from shipsure import mediatypes as mt
from shipsure.sandbox import SandboxError
from shipsure.sandbox.faults import tag_folder

Kind = Literal["oci", "docker"]

HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_LAYER_SIZE = 2048
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")

ARTIFACT_TYPE_SBOM = "application/vnd.example.sbom"
IN_TOTO_LAYER = "application/vnd.in-toto+json"
# OCI image-spec manifest.md: the empty descriptor is `{}` with this digest and size 2.
EMPTY_JSON = b"{}"
# OCI distribution-spec: "referrers tag schema" `<alg>-<ref>` for registries without the API.
ANNOTATION_REFERENCE_DIGEST = "vnd.docker.reference.digest"
_CREATED = "2024-01-01T00:00:00Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encode_json(document: dict[str, Any]) -> bytes:
    """Indented like the manifests docker and buildx push (the registry keeps bytes as sent)."""
    return json.dumps(document, indent=3).encode()


# --- content -------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """Bytes pushed as a blob, with the descriptor fields that point at them."""

    media_type: str
    data: bytes = field(repr=False)
    digest: str

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, kw_only=True)
class Layer(Blob):
    diff_id: str  # sha256 of the uncompressed tar, as the config's rootfs lists it


def make_layer(seed: str, *, size: int = DEFAULT_LAYER_SIZE, kind: Kind = "oci") -> Layer:
    """A gzip'd tar with one file of `size` seeded random bytes (incompressible)."""
    rng = random.Random(f"layer:{seed}")
    content = rng.randbytes(size)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"sandbox/{hashlib.sha256(seed.encode()).hexdigest()[:16]}")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = buffer.getvalue()
    gz = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    media_type = mt.OCI_LAYER_GZIP if kind == "oci" else mt.DOCKER_LAYER
    return Layer(media_type, gz, sha256_digest(gz), diff_id=sha256_digest(tar_bytes))


def parse_platform(text: str) -> dict[str, str]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r} is not os/arch[/variant]")
    platform = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        platform["variant"] = parts[2]
    return platform


def make_config(
    seed: str, layers: Sequence[Layer], platform: dict[str, str], kind: Kind = "oci"
) -> Blob:
    document: dict[str, Any] = {
        "architecture": platform["architecture"],
        "os": platform["os"],
        "created": _CREATED,
        "config": {"Env": ["PATH=/usr/bin:/bin", f"SANDBOX_SEED={seed}"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": _CREATED, "created_by": f"sandbox layer {i}"} for i in range(len(layers))
        ],
    }
    if "variant" in platform:
        document["variant"] = platform["variant"]
    data = encode_json(document)
    media_type = mt.OCI_CONFIG if kind == "oci" else mt.DOCKER_CONFIG
    return Blob(media_type, data, sha256_digest(data))


# --- what was pushed -------------------------------------------------------------------


@dataclass(frozen=True)
class PushedManifest:
    """A manifest as stored: exact bytes, digest and media type, and where it lives."""

    repo: str
    tag: str | None
    digest: str
    media_type: str
    raw: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, kw_only=True)
class PushedImage(PushedManifest):
    """One image manifest with its config and layers."""

    config: Blob = field(repr=False)
    layers: tuple[Layer, ...] = field(repr=False)
    platform: str

    @property
    def config_digest(self) -> str:
        return self.config.digest

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(layer.digest for layer in self.layers)

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Config first, then layers: every blob this manifest references."""
        return (self.config_digest, *self.layer_digests)


@dataclass(frozen=True, kw_only=True)
class PushedIndex(PushedManifest):
    """An image index / manifest list with what it lists, inner indexes included."""

    children: tuple[PushedImage, ...] = ()
    attestations: tuple[PushedImage, ...] = ()
    inner: tuple[PushedIndex, ...] = ()

    def images(self) -> Iterator[PushedImage]:
        """Every image manifest below this index, depth first, attestations included."""
        yield from self.children
        yield from self.attestations
        for index in self.inner:
            yield from index.images()

    def platform_images(self) -> Iterator[PushedImage]:
        """Runnable images below this index (no attestations), depth first."""
        yield from self.children
        for index in self.inner:
            yield from index.platform_images()

    @property
    def manifest_digests(self) -> tuple[str, ...]:
        """This index, every inner index and every image manifest below it."""
        direct = (image.digest for image in (*self.children, *self.attestations))
        inner = (d for index in self.inner for d in index.manifest_digests)
        return (self.digest, *direct, *inner)

    @property
    def blob_digests(self) -> frozenset[str]:
        """Every config and layer below this index (shared ones once)."""
        return frozenset(d for image in self.images() for d in image.blob_digests)


@dataclass(frozen=True, kw_only=True)
class PushedArtifact(PushedManifest):
    """An OCI artifact with a subject, and the referrers fallback tag that lists it."""

    artifact_type: str
    subject_digest: str
    config: Blob = field(repr=False)
    layer: Blob = field(repr=False)
    referrers_tag: str
    referrers_index_digest: str

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config.digest, self.layer.digest)


Subject = PushedManifest | str


# --- talking to the registry -----------------------------------------------------------


class PushRefusedError(SandboxError):
    """The registry answered a push with something other than success."""


def open_client(url: str) -> httpx.Client:
    # Plain http only: skipping TLS set-up makes a client cheap enough to open per call.
    return httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, verify=False)


class _Pusher:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def _refused(self, action: str, response: httpx.Response) -> PushRefusedError:
        body = response.text[:300]
        return PushRefusedError(
            f"registry {self.client.base_url} refused {action}: HTTP {response.status_code} {body}"
        )

    def push_blob(self, repo: str, blob: Blob) -> None:
        """Monolithic upload (POST, then PUT ?digest=), skipped when the blob HEADs 200."""
        head = self.client.head(f"/v2/{repo}/blobs/{blob.digest}")
        if head.status_code == 200:
            return
        started = self.client.post(f"/v2/{repo}/blobs/uploads/")
        if started.status_code != 202 or "location" not in started.headers:
            raise self._refused(f"upload start in {repo}", started)
        # The Location carries the upload's `_state`; httpx's `params=` would replace it.
        location = httpx.URL(started.headers["location"])
        finished = self.client.put(
            location.copy_merge_params({"digest": blob.digest}),
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if finished.status_code != 201:
            raise self._refused(f"blob {blob.digest} in {repo}", finished)

    def put_manifest(self, repo: str, reference: str, media_type: str, raw: bytes) -> str:
        response = self.client.put(
            f"/v2/{repo}/manifests/{reference}", content=raw, headers={"Content-Type": media_type}
        )
        if response.status_code != 201:
            raise self._refused(f"manifest {repo}:{reference}", response)
        digest = sha256_digest(raw)
        served = response.headers.get("docker-content-digest")
        if served != digest:
            raise PushRefusedError(
                f"registry stored {repo}:{reference} as {served}, expected {digest}"
            )
        return digest

    def get_manifest(self, repo: str, reference: str) -> httpx.Response:
        return self.client.get(
            f"/v2/{repo}/manifests/{reference}", headers={"Accept": mt.MANIFEST_ACCEPT}
        )

    def push_manifest(
        self, repo: str, tag: str | None, media_type: str, document: dict[str, Any]
    ) -> tuple[str, bytes]:
        raw = encode_json(document)
        digest = sha256_digest(raw)
        self.put_manifest(repo, tag or digest, media_type, raw)
        return digest, raw


def _manifest_types(kind: Kind) -> tuple[str, str]:
    if kind == "oci":
        return mt.OCI_MANIFEST, mt.OCI_INDEX
    if kind == "docker":
        return mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST
    raise ValueError(f"kind {kind!r} is not 'oci' or 'docker'")


def _push_image(
    pusher: _Pusher,
    repo: str,
    tag: str | None,
    *,
    kind: Kind,
    layers: int,
    shared_layers: Sequence[str],
    seed: str,
    platform: str,
    layer_size: int,
) -> PushedImage:
    manifest_type, _ = _manifest_types(kind)
    built = [make_layer(s, size=layer_size, kind=kind) for s in shared_layers]
    built += [make_layer(f"{seed}/{i}", size=layer_size, kind=kind) for i in range(layers)]
    config = make_config(seed, built, parse_platform(platform), kind)
    for blob in (config, *built):
        pusher.push_blob(repo, blob)
    document = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in built],
    }
    digest, raw = pusher.push_manifest(repo, tag, manifest_type, document)
    return PushedImage(
        repo, tag, digest, manifest_type, raw, config=config, layers=tuple(built), platform=platform
    )


def push_image(
    url: str,
    repo: str,
    tag: str | None,
    *,
    kind: Kind = "oci",
    layers: int = 2,
    shared_layers: Sequence[str] = (),
    seed: str | None = None,
    platform: str = "linux/amd64",
    layer_size: int = DEFAULT_LAYER_SIZE,
    client: httpx.Client | None = None,
) -> PushedImage:
    """Push one image: `shared_layers` (seeds, first) then `layers` layers of its own.

    The seed defaults to "<repo>:<tag>"; `tag=None` pushes by digest only.
    """
    seed = seed if seed is not None else f"{repo}:{tag}"
    with _client_for(url, client) as pusher:
        return _push_image(
            pusher,
            repo,
            tag,
            kind=kind,
            layers=layers,
            shared_layers=shared_layers,
            seed=seed,
            platform=platform,
            layer_size=layer_size,
        )


class _client_for:
    """Use the caller's client, or open (and then close) one of our own."""

    def __init__(self, url: str, client: httpx.Client | None) -> None:
        self._own = client is None
        self._client = client if client is not None else open_client(url)

    def __enter__(self) -> _Pusher:
        return _Pusher(self._client)

    def __exit__(self, *exc_info: object) -> None:
        if self._own:
            self._client.close()


def _attestation(pusher: _Pusher, repo: str, seed: str, subject: PushedImage) -> PushedImage:
    """A BuildKit-style attestation manifest (in-toto provenance) for one child."""
    statement = encode_json(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": repo, "digest": {"sha256": subject.digest.split(":")[1]}}],
            "predicate": {"builder": {"id": f"sandbox:{seed}"}},
        }
    )
    # Not compressed: the layer's diff_id is its own digest.
    layer = Layer(
        IN_TOTO_LAYER, statement, sha256_digest(statement), diff_id=sha256_digest(statement)
    )
    config = make_config(seed, [layer], {"architecture": "unknown", "os": "unknown"})
    for blob in (config, layer):
        pusher.push_blob(repo, blob)
    layer_descriptor = layer.descriptor()
    layer_descriptor["annotations"] = {
        "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"
    }
    document = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer_descriptor],
    }
    digest, raw = pusher.push_manifest(repo, None, mt.OCI_MANIFEST, document)
    return PushedImage(
        repo,
        None,
        digest,
        mt.OCI_MANIFEST,
        raw,
        config=config,
        layers=(layer,),
        platform="unknown/unknown",
    )


def _push_index_document(
    pusher: _Pusher,
    repo: str,
    tag: str | None,
    index_type: str,
    entries: list[dict[str, Any]],
) -> tuple[str, bytes]:
    document = {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
    return pusher.push_manifest(repo, tag, index_type, document)


def _platform_entry(image: PushedImage) -> dict[str, Any]:
    entry = image.descriptor()
    entry["platform"] = parse_platform(image.platform)
    return entry


def push_index(
    url: str,
    repo: str,
    tag: str | None,
    *,
    kind: Kind = "oci",
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    attestations: bool = False,
    nested: bool = False,
    layers: int = 1,
    shared_layers: Sequence[str] = (),
    seed: str | None = None,
    layer_size: int = DEFAULT_LAYER_SIZE,
    client: httpx.Client | None = None,
) -> PushedIndex:
    """Push a multi-platform image as `docker buildx --push` does: children first, then the index.

    Each child has `shared_layers` (seeds), a base layer shared by all children of this
    index, then `layers` layers of its own. `attestations` adds a BuildKit attestation
    manifest per child (OCI only). `nested` puts every platform but the first into an inner
    index that the outer one lists beside the first child.
    """
    if attestations and kind != "oci":
        raise ValueError("attestations need kind='oci': BuildKit only adds them to OCI indexes")
    if not platforms:
        raise ValueError("an index needs at least one platform")
    if nested and len(platforms) < 2:
        raise ValueError("a nested index needs at least two platforms")
    seed = seed if seed is not None else f"{repo}:{tag}"
    _, index_type = _manifest_types(kind)
    base = f"{seed}/base"
    with _client_for(url, client) as pusher:
        children: list[PushedImage] = []
        proof_of: dict[str, PushedImage] = {}
        for platform in platforms:
            child = _push_image(
                pusher,
                repo,
                None,
                kind=kind,
                layers=layers,
                shared_layers=(*shared_layers, base),
                seed=f"{seed}/{platform}",
                platform=platform,
                layer_size=layer_size,
            )
            children.append(child)
            if attestations:
                proof_of[child.digest] = _attestation(pusher, repo, f"{seed}/{platform}", child)

        def entries(images: Sequence[PushedImage]) -> list[dict[str, Any]]:
            # BuildKit lists every platform first, then one attestation per platform.
            listed = [_platform_entry(image) for image in images]
            listed += [_attestation_entry(proof, subject) for subject, proof in proved(images)]
            return listed

        def proved(images: Sequence[PushedImage]) -> list[tuple[PushedImage, PushedImage]]:
            return [(i, proof_of[i.digest]) for i in images if i.digest in proof_of]

        def index(
            tag: str | None,
            images: Sequence[PushedImage],
            inner: tuple[PushedIndex, ...] = (),
        ) -> PushedIndex:
            listed = entries(images) + [i.descriptor() for i in inner]
            digest, raw = _push_index_document(pusher, repo, tag, index_type, listed)
            return PushedIndex(
                repo,
                tag,
                digest,
                index_type,
                raw,
                children=tuple(images),
                attestations=tuple(proof for _, proof in proved(images)),
                inner=inner,
            )

        if not nested:
            return index(tag, children)
        return index(tag, children[:1], (index(None, children[1:]),))


def _attestation_entry(proof: PushedImage, subject: PushedImage) -> dict[str, Any]:
    entry = proof.descriptor()
    entry["platform"] = {"architecture": "unknown", "os": "unknown"}
    entry["annotations"] = {
        ANNOTATION_REFERENCE_DIGEST: subject.digest,
        mt.ATTESTATION_REFERENCE_TYPE: mt.ATTESTATION_MANIFEST,
    }
    return entry


def _subject_descriptor(pusher: _Pusher, repo: str, subject: Subject) -> dict[str, Any]:
    if isinstance(subject, PushedManifest):
        return subject.descriptor()
    response = pusher.get_manifest(repo, subject)
    if response.status_code != 200:
        raise PushRefusedError(
            f"subject {repo}@{subject} is not served (HTTP {response.status_code})"
        )
    media_type = response.headers.get("content-type", "").split(";")[0]
    return {"mediaType": media_type, "digest": subject, "size": len(response.content)}


def referrers_tag(digest: str) -> str:
    """OCI distribution-spec "referrers tag schema": `<alg>-<ref>`, e.g. sha256-<hex>."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}-{hex_part}"


def push_artifact(
    url: str,
    repo: str,
    subject: Subject,
    *,
    artifact_type: str = ARTIFACT_TYPE_SBOM,
    tag: str | None = None,
    seed: str | None = None,
    client: httpx.Client | None = None,
) -> PushedArtifact:
    """Push an OCI artifact (empty config, one layer) whose `subject` is another manifest.

    distribution 2.8 has no referrers API, so also keep the fallback tag `sha256-<hex>` of
    the subject pointing to an OCI index that lists every referrer pushed so far.
    """
    with _client_for(url, client) as pusher:
        described = _subject_descriptor(pusher, repo, subject)
        subject_digest = described["digest"]
        seed = seed if seed is not None else f"{repo}@{subject_digest}:{artifact_type}"
        config = Blob(mt.OCI_EMPTY, EMPTY_JSON, sha256_digest(EMPTY_JSON))
        body = encode_json({"sandbox-artifact": seed, "subject": subject_digest})
        layer = Blob("application/json", body, sha256_digest(body))
        for blob in (config, layer):
            pusher.push_blob(repo, blob)
        document = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
            "subject": described,
            "annotations": {"org.opencontainers.image.created": _CREATED},
        }
        digest, raw = pusher.push_manifest(repo, tag, mt.OCI_MANIFEST, document)
        fallback = referrers_tag(subject_digest)
        referrer = {
            "mediaType": mt.OCI_MANIFEST,
            "digest": digest,
            "size": len(raw),
            "artifactType": artifact_type,
            "annotations": document["annotations"],
        }
        index_digest = _add_referrer(pusher, repo, fallback, referrer)
        return PushedArtifact(
            repo,
            tag,
            digest,
            mt.OCI_MANIFEST,
            raw,
            artifact_type=artifact_type,
            subject_digest=subject_digest,
            config=config,
            layer=layer,
            referrers_tag=fallback,
            referrers_index_digest=index_digest,
        )


def _add_referrer(pusher: _Pusher, repo: str, fallback: str, referrer: dict[str, Any]) -> str:
    """Read-modify-write the referrers fallback index, as ORAS/cosign clients do."""
    existing = pusher.get_manifest(repo, fallback)
    listed: list[dict[str, Any]] = []
    if existing.status_code == 200:
        listed = list(json.loads(existing.content).get("manifests", []))
    elif existing.status_code != 404:
        raise PushRefusedError(
            f"cannot read referrers tag {repo}:{fallback}: HTTP {existing.status_code}"
        )
    if all(entry.get("digest") != referrer["digest"] for entry in listed):
        listed.append(referrer)
    digest, _ = _push_index_document(pusher, repo, fallback, mt.OCI_INDEX, listed)
    return digest


# --- removing things -------------------------------------------------------------------


def delete_tag_folder(root: Path, repo: str, tag: str) -> Path:
    """Delete a tag the way nightly cleanup scripts do: `rm -rf` of its folder on disk.

    The revision links and data stay; only the tag (and its history) is gone.
    """
    folder = tag_folder(root, repo, tag)
    if not folder.is_dir():
        raise SandboxError(f"cannot delete tag {repo}:{tag}: {folder} does not exist")
    shutil.rmtree(folder)
    return folder


def delete_manifest(
    url: str, repo: str, digest: str, *, client: httpx.Client | None = None
) -> None:
    """`DELETE /v2/<repo>/manifests/<digest>` (needs delete enabled; answers 202)."""
    with _client_for(url, client) as pusher:
        response = pusher.client.delete(f"/v2/{repo}/manifests/{digest}")
        if response.status_code != 202:
            raise pusher._refused(f"delete of {repo}@{digest}", response)
