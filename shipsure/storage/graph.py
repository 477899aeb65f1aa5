"""The manifest reference graph as stored: which manifests and blobs a manifest names.

Pure: bytes in, records out. Digests are plain `sha256:<hex>` strings so a scan of a large
registry keeps millions of them cheaply. Every manifest is parsed once per scan (the global
blob store is shared by all repositories) and only its references are kept, never its bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shipsure import mediatypes as mt
from shipsure.errors import InvalidDigestError, ManifestError, UnsupportedManifestError
from shipsure.model import Digest, ImageIndex, parse_manifest

# Foreign layers live at their `urls`, not in the registry: distribution never stores them.
_NOT_STORED = frozenset({mt.DOCKER_FOREIGN_LAYER})


@dataclass(frozen=True, slots=True)
class Ref:
    """One reference out of a manifest: to a child manifest or to a blob."""

    digest: str
    size: int  # -1 when the manifest does not say (schema1)
    label: str  # how it shows in a finding's path, e.g. "linux/arm64 sha256:..", "layer sha256:.."


@dataclass(frozen=True, slots=True)
class ManifestNode:
    digest: str
    media_type: str
    children: tuple[Ref, ...]  # index entries (manifests)
    blobs: tuple[Ref, ...]  # config and layers stored in the registry
    subject: str | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def label(self) -> str:
        return f"{'index' if self.is_index else 'manifest'} {self.digest}"


def node_from_bytes(raw: bytes, digest: str) -> ManifestNode:
    """References of verified manifest bytes. Raises ManifestError when they are not one."""
    node = _fast_node(raw, digest)
    if node is not None:
        return node
    try:
        manifest = parse_manifest(raw)
    except UnsupportedManifestError:
        return _schema1_node(raw, digest)
    subject = str(manifest.subject.digest) if manifest.subject else None
    if isinstance(manifest, ImageIndex):
        children = tuple(Ref(str(d.digest), d.size, d.label()) for d in manifest.manifests)
        return ManifestNode(digest, manifest.media_type, children, (), subject)
    blobs = [
        Ref(str(manifest.config.digest), manifest.config.size, f"config {manifest.config.digest}")
    ]
    for layer in manifest.layers:
        if layer.is_foreign or layer.media_type in _NOT_STORED:
            continue
        blobs.append(Ref(str(layer.digest), layer.size, f"layer {layer.digest}"))
    return ManifestNode(digest, manifest.media_type, (), tuple(blobs), subject)


def _schema1_node(raw: bytes, digest: str) -> ManifestNode:
    # Docker schema1 (registry/storage/schema2manifesthandler.go's older sibling): the
    # blobs are `fsLayers[].blobSum`, without sizes. Distribution 2.8 still stores them.
    try:
        doc = json.loads(raw)
        layers = doc["fsLayers"]
        sums = [str(Digest.parse(item["blobSum"])) for item in layers]
    except (ValueError, KeyError, TypeError, InvalidDigestError) as exc:
        raise ManifestError(f"schema1 manifest without readable fsLayers: {exc}") from None
    blobs = tuple(Ref(s, -1, f"layer {s}") for s in dict.fromkeys(sums))
    return ManifestNode(digest, mt.DOCKER_SCHEMA1, (), blobs)


# --- the fast path -----------------------------------------------------------------------
# A scan parses every manifest in the registry, and building full model objects per
# descriptor costs more than reading the file. `_fast_node` reads the common, well-formed
# shapes directly and accepts only what `parse_manifest` would accept; anything unusual
# (absent mediaType, odd fields, schema1, errors) returns None and goes through
# `parse_manifest`, which also gives the precise error message.

_DIGEST_RE = re.compile(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


def _fast_node(raw: bytes, digest: str) -> ManifestNode | None:
    if len(raw) > mt.MAX_MANIFEST_BYTES:
        return None
    try:
        doc = json.loads(raw.decode())
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        return None
    media_type = doc.get("mediaType")
    if media_type not in mt.MANIFESTS or "subject" in doc:
        return None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        return None
    if media_type in mt.INDEXES:
        entries = doc.get("manifests", [])
        if not isinstance(entries, list):
            return None
        children = []
        for entry in entries:
            ref = _fast_ref(entry, child=True)
            if ref is None:
                return None
            children.append(ref)
        return ManifestNode(digest, media_type, tuple(children), ())
    config = _fast_ref(doc.get("config"), prefix="config")
    layers = doc.get("layers", [])
    if config is None or not isinstance(layers, list):
        return None
    blobs = [config]
    for entry in layers:
        ref = _fast_ref(entry, prefix="layer")
        if ref is None:
            return None
        if entry["mediaType"] in _NOT_STORED or (
            entry.get("urls") and "nondistributable" in entry["mediaType"]
        ):
            continue
        blobs.append(ref)
    return ManifestNode(digest, media_type, (), tuple(blobs))


def _fast_ref(entry: Any, *, child: bool = False, prefix: str = "") -> Ref | None:
    if not isinstance(entry, dict):
        return None
    d = entry.get("digest")
    size = entry.get("size")
    media_type = entry.get("mediaType")
    if (
        not isinstance(d, str)
        or not _DIGEST_RE.match(d)
        or type(size) is not int
        or size < 0
        or not isinstance(media_type, str)
        or not media_type
    ):
        return None
    annotations = entry.get("annotations")
    urls = entry.get("urls")
    if (annotations is not None and not isinstance(annotations, dict)) or (
        urls is not None and not isinstance(urls, list)
    ):
        return None
    if not child:
        return Ref(d, size, f"{prefix} {d}")
    if annotations and annotations.get(mt.ATTESTATION_REFERENCE_TYPE) == mt.ATTESTATION_MANIFEST:
        return Ref(d, size, f"attestation {d}")
    platform = entry.get("platform")
    if platform is None:
        return Ref(d, size, d)
    if not isinstance(platform, dict):
        return None
    os_, arch, variant = platform.get("os"), platform.get("architecture"), platform.get("variant")
    if not isinstance(os_, str) or not isinstance(arch, str):
        return None
    label = f"{os_}/{arch}/{variant}" if isinstance(variant, str) and variant else f"{os_}/{arch}"
    return Ref(d, size, f"{label} {d}")
