"""The manifest reference graph as stored: which manifests and blobs a manifest names.

Pure: bytes in, records out. Digests are plain `<algorithm>:<hex>` strings so a scan of a
large registry keeps millions of them cheaply. Every manifest is parsed once per scan (the
global blob store is shared by all repositories) and only its references are kept, never its
bytes.

What a manifest references is decided by one function, `model.contents`; this module only
re-shapes its answer. `_fast_node` reads the common shapes directly, for speed, and
`tests/storage/test_graph.py` holds it to `model.contents` manifest by manifest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shipsure import mediatypes as mt
from shipsure.model import DIGEST_ALGORITHMS, Descriptor, contents_of


@dataclass(frozen=True, slots=True)
class Ref:
    """One reference out of a manifest: to a child manifest or to a blob."""

    digest: str
    size: int  # -1 when the manifest does not say (schema1)
    label: str  # how it shows in a finding's path, e.g. "linux/arm64 sha256:..", "layer sha256:.."


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """A manifest's references, as `model.Contents` sorts them.

    `children` and `blobs` are what a pull asks this registry for; `foreign` are listed layers
    a pull fetches from their urls; `listed` (all three) is what garbage collection marks.
    `subject` is named but neither pulled nor marked.
    """

    digest: str
    media_type: str
    children: tuple[Ref, ...]  # index entries that are manifests
    blobs: tuple[Ref, ...]  # config, layers and blob-typed index entries served by the registry
    subject: str | None = None
    foreign: tuple[Ref, ...] = ()  # non-distributable layers (urls), listed but not served

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def label(self) -> str:
        return f"{'index' if self.is_index else 'manifest'} {self.digest}"

    @property
    def listed(self) -> tuple[Ref, ...]:
        """Every reference the manifest lists: distribution's `Manifest.References()`."""
        return (*self.children, *self.blobs, *self.foreign)


def node_from_bytes(raw: bytes, digest: str) -> ManifestNode:
    """References of verified manifest bytes. Raises ManifestError when they are not one."""
    node = _fast_node(raw, digest)
    if node is not None:
        return node
    return model_node(raw, digest)


def model_node(raw: bytes, digest: str) -> ManifestNode:
    """`node_from_bytes` without the fast path: `model.contents_of`, re-shaped."""
    media_type, found = contents_of(raw)
    is_index = media_type in mt.INDEXES

    def refs(descriptors: Iterable[Descriptor], role: str) -> tuple[Ref, ...]:
        if is_index:
            return tuple(Ref(str(d.digest), d.size, d.label()) for d in descriptors)
        return tuple(Ref(str(d.digest), d.size, f"{role} {d.digest}") for d in descriptors)

    if is_index or media_type == mt.DOCKER_SCHEMA1:
        blob_refs = refs(found.blobs, "layer")
    else:  # an image manifest: the config first, then its layers
        config, *layers = found.blobs
        blob_refs = (*refs((config,), "config"), *refs(layers, "layer"))
    return ManifestNode(
        digest,
        media_type,
        refs(found.children, "child"),
        blob_refs,
        str(found.subject.digest) if found.subject else None,
        refs(found.foreign, "layer"),
    )


# --- the fast path -----------------------------------------------------------------------
# A scan parses every manifest in the registry, and building full model objects per
# descriptor costs more than reading the file. `_fast_node` reads the common, well-formed
# shapes directly and accepts only what `parse_manifest` would accept; anything unusual
# (absent mediaType, `subject`, odd fields, schema1, errors) returns None and goes through
# `model_node`, which also gives the precise error message.

_DIGEST_RE = re.compile("|".join(f"{a}:[0-9a-f]{{{n}}}" for a, n in DIGEST_ALGORITHMS.items()))


def _fast_node(raw: bytes, digest: str) -> ManifestNode | None:
    if len(raw) > mt.MAX_MANIFEST_BYTES:
        return None
    try:
        doc = json.loads(raw.decode())
    except (ValueError, RecursionError):  # the model's parser says what is wrong
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
        children, blobs, foreign = [], [], []
        for entry in entries:
            ref = _fast_ref(entry, child=True)
            if ref is None:
                return None
            if not mt.is_blob_type(entry["mediaType"]):
                children.append(ref)
            elif _is_foreign(entry):
                foreign.append(ref)
            else:
                blobs.append(ref)
        return ManifestNode(digest, media_type, tuple(children), tuple(blobs), None, tuple(foreign))
    config = _fast_ref(doc.get("config"), prefix="config")
    layers = doc.get("layers", [])
    if config is None or not isinstance(layers, list):
        return None
    blobs = [config]
    foreign = []
    for entry in layers:
        ref = _fast_ref(entry, prefix="layer")
        if ref is None:
            return None
        (foreign if _is_foreign(entry) else blobs).append(ref)
    return ManifestNode(digest, media_type, (), tuple(blobs), None, tuple(foreign))


def _is_foreign(entry: dict[str, Any]) -> bool:
    # The rule of `model.Descriptor.is_foreign`, on the raw entry.
    media_type = entry["mediaType"]
    return media_type == mt.DOCKER_FOREIGN_LAYER or (
        bool(entry.get("urls")) and "nondistributable" in media_type
    )


def _fast_ref(entry: Any, *, child: bool = False, prefix: str = "") -> Ref | None:
    if not isinstance(entry, dict):
        return None
    d = entry.get("digest")
    size = entry.get("size")
    media_type = entry.get("mediaType")
    if (
        not isinstance(d, str)
        or not _DIGEST_RE.fullmatch(d)
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
    label = "/".join(p for p in (os_, arch, variant if isinstance(variant, str) else "") if p)
    return Ref(d, size, f"{label} {d}")
