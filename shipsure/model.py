"""OCI content model: digests, references, descriptors, manifests and indexes.

Pure: no I/O. Models check themselves when built. `parse_manifest` keeps the raw bytes, and
digests are always computed over the bytes received, never over re-serialized JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipsure import mediatypes as mt
from shipsure.errors import (
    InvalidDigestError,
    InvalidReferenceError,
    ManifestError,
    UnsupportedManifestError,
)

# --- digests ---------------------------------------------------------------------------

# The one list of digest algorithms shipsure accepts, with the length of their lowercase hex.
# OCI image-spec descriptor.md registers sha256 and sha512; go-digest (algorithm.go), which
# distribution validates every digest with, also accepts sha384, and distribution stores
# blobs under `blobs/<algorithm>/` for each. Storage paths, link files, manifests and
# references all take their grammar from here.
DIGEST_ALGORITHMS: Mapping[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        # fullmatch, not `$`: `$` also matches before a trailing newline.
        m = _DIGEST_RE.fullmatch(text)
        if not m or len(m.group(2)) != DIGEST_ALGORITHMS[m.group(1)]:
            raise InvalidDigestError(f"invalid digest {text[:160]!r}: want sha256:<64 hex>")
        return cls(m.group(1), m.group(2))

    @staticmethod
    def is_valid(text: str) -> bool:
        """True when `text` is exactly `<algorithm>:<hex>` of a known algorithm."""
        m = _DIGEST_RE.fullmatch(text)
        return m is not None and len(m.group(2)) == DIGEST_ALGORITHMS[m.group(1)]

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Any:
        """A fresh hash object of this digest's algorithm, for streamed bodies."""
        return hashlib.new(self.algorithm)

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


# --- references ------------------------------------------------------------------------

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_DEFAULT_REGISTRY = "index.docker.io"

# Grammar of distribution/reference (reference/regexp.go), as docker and crane apply it: the
# one grammar of names in shipsure (the registry client and its host option use it too).
# ASCII only, matched whole: in Python `\w` and `[0-9]`-like classes may match other
# scripts' letters unless re.ASCII is given, and `$` accepts a trailing newline.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?",
    re.ASCII,
)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# OCI image-spec descriptor.md digest grammar, any algorithm: what may follow `@` or
# `/manifests/` on the wire (whether shipsure can verify the algorithm is Digest's concern).
_DIGEST_SHAPE_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Reference:
    """An image reference, normalized as docker does: `registry/repository[:tag][@digest]`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> Reference:
        """Parse like `docker pull` / `crane`: `alpine` is `docker.io/library/alpine:latest`.

        With `default_tag=False` a bare name keeps no tag (a repository, not an image).
        """
        original = mask_userinfo(text)
        if original != text:
            # `user:password@host/...` is not a reference anywhere; the message must not
            # echo the secret, and should say where credentials go instead.
            raise InvalidReferenceError(
                f"invalid reference {original!r}: a reference holds no credentials; give "
                "them with --username and --password-stdin, SHIPSURE_USERNAME and "
                "SHIPSURE_PASSWORD, or docker's config.json (docker login)"
            )
        if not text or text != text.strip() or any(c.isspace() for c in text):
            raise InvalidReferenceError(f"invalid reference {original!r}: empty or has spaces")
        if not text.isascii():
            # distribution's grammar is ASCII; a look-alike letter (Cyrillic "с") would
            # otherwise reach the wire and fail there as an encoding error.
            raise InvalidReferenceError(
                f"invalid reference {original!r}: non-ASCII character "
                f"{next(c for c in text if not c.isascii())!r} (names are ASCII only)"
            )
        if "://" in text:
            rest = text.partition("://")[2]
            raise InvalidReferenceError(
                f"invalid reference {original!r}: a reference takes no scheme (write "
                f"{rest!r}; plain HTTP is chosen by --insecure, or by itself for localhost)"
            )
        digest: Digest | None = None
        if "@" in text:
            text, _, digest_text = text.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except InvalidDigestError:
                raise InvalidReferenceError(
                    f"invalid reference {original!r}: bad digest {digest_text!r}"
                ) from None
        tag: str | None = None
        last_slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > last_slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG_RE.fullmatch(tag):
                raise InvalidReferenceError(f"invalid reference {original!r}: bad tag {tag!r}")
        registry, repository = _split_domain(text)
        if not is_host(registry):
            raise InvalidReferenceError(
                f"invalid reference {original!r}: bad registry host {registry!r}"
            )
        if repository != repository.lower() and _REPOSITORY_RE.fullmatch(repository.lower()):
            raise InvalidReferenceError(
                f"invalid reference {original!r}: repository name must be lowercase"
            )
        if not _REPOSITORY_RE.fullmatch(repository):
            raise InvalidReferenceError(
                f"invalid reference {original!r}: bad repository name {repository!r}"
            )
        if len(f"{registry}/{repository}") > _MAX_NAME_LENGTH:
            raise InvalidReferenceError(f"invalid reference {original[:80]!r}...: name too long")
        if tag is None and digest is None and default_tag:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_repository_name(text: str) -> bool:
    """A repository path as distribution accepts it: `team/app`, lower-case ASCII."""
    return len(text) <= _MAX_NAME_LENGTH and _REPOSITORY_RE.fullmatch(text) is not None


def is_tag(text: str) -> bool:
    """`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`: distribution's tag grammar."""
    return _TAG_RE.fullmatch(text) is not None


def is_manifest_reference(text: str) -> bool:
    """What may follow `/manifests/`: a tag, or a digest of any registered-looking shape."""
    return is_tag(text) or _DIGEST_SHAPE_RE.fullmatch(text) is not None


def is_host(text: str) -> bool:
    """`host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 one (ASCII only), and a
    port, when given, from 1 to 65535 (a URL with another port cannot be built)."""
    m = _DOMAIN_RE.fullmatch(text)
    if m is None:
        return False
    _, colon, port = text.rpartition(":")
    if colon and not text.endswith("]") and port.isdigit() and "]" not in port:
        return 0 < int(port) <= 65535
    return True


def mask_userinfo(text: str) -> str:
    """`text` with the password of any `user:password@` before a host masked as `***`
    (the whole user-info when it has no colon: it may be a token alone).

    Finds user-info in a reference (`ci:pw@host/repo:tag`) and in URLs
    (`https://ci:pw@host/...`) alike; `repo@sha256:...` is a digest, not user-info.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    head, at, tail = rest.partition("@")
    if not at or "/" in head:
        return text
    if "/" not in tail and (":" not in head or _DIGEST_SHAPE_RE.fullmatch(tail)):
        return text  # name@digest, or a mistyped one: nothing that reads as a password
    user, colon, _ = head.partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}{sep}{masked}@{tail}"


def _split_domain(name: str) -> tuple[str, str]:
    # distribution/reference normalize.go splitDockerDomain: the first component is a
    # registry host only if it has a '.' or ':' or is 'localhost' (or has uppercase).
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_REGISTRY, name
    if domain == _LEGACY_DEFAULT_REGISTRY:
        domain = DEFAULT_REGISTRY
    if domain == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


# --- platforms and descriptors ---------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReferenceError(f"invalid platform {text!r}: want os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def normalized(self) -> Platform:
        """The platform as containerd normalises it (containerd/platforms database.go):
        lower case; architecture aliases (`aarch64` is `arm64`, `x86_64` and `x86-64` are
        `amd64`, `i386` is `386`, `armhf` is `arm/v7`, `armel` is `arm/v6`); default
        variants dropped or spelled out (`arm64/v8` is `arm64`, `amd64/v1` is `amd64`,
        `arm` is `arm/v7`, `arm/7` is `arm/v7`); `macos` is `darwin`."""
        os_ = self.os.lower()
        os_ = "darwin" if os_ == "macos" else os_
        arch = self.architecture.lower()
        variant = (self.variant or "").lower()
        if arch == "i386":
            arch, variant = "386", ""
        elif arch in ("x86_64", "x86-64", "amd64"):
            arch = "amd64"
            variant = "" if variant == "v1" else variant
        elif arch in ("aarch64", "arm64"):
            arch = "arm64"
            if variant in ("8", "v8", "v8.0"):
                variant = ""
            elif variant in ("9", "9.0", "v9.0"):
                variant = "v9"
        elif arch == "armhf":
            arch, variant = "arm", "v7"
        elif arch == "armel":
            arch, variant = "arm", "v6"
        elif arch == "arm":
            if variant in ("", "7"):
                variant = "v7"
            elif variant in ("5", "6", "8"):
                variant = "v" + variant
        return Platform(os_, arch, variant or None)

    def matches(self, other: Platform) -> bool:
        """`self` is a filter, compared as containerd normalises both: `linux/arm64/v8`
        matches a child that says `arm64` with no variant. A filter without a variant
        matches every variant of its architecture; one with a variant, only that one."""
        wanted, child = self.normalized(), other.normalized()
        if (wanted.os, wanted.architecture) != (child.os, child.architecture):
            return False
        implied = self.architecture.lower() in ("armhf", "armel")  # these name a variant
        return (self.variant is None and not implied) or wanted.variant == child.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @property
    def is_attestation(self) -> bool:
        return self.annotations.get(mt.ATTESTATION_REFERENCE_TYPE) == mt.ATTESTATION_MANIFEST

    @property
    def is_foreign(self) -> bool:
        """Foreign layers live at `urls`, not in the registry; a 404 for them is normal."""
        return self.media_type == mt.DOCKER_FOREIGN_LAYER or (
            bool(self.urls) and "nondistributable" in self.media_type
        )

    def label(self) -> str:
        """How this descriptor shows in a finding's path."""
        if self.is_attestation:
            return f"attestation {self.digest}"
        if self.platform is not None:
            return f"{self.platform} {self.digest}"
        return str(self.digest)


# --- manifests -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageManifest:
    """An OCI image manifest or Docker schema2 manifest (also OCI artifacts)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    digest: Digest
    raw: bytes = field(repr=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class ImageIndex:
    """An OCI image index or Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    digest: Digest
    raw: bytes = field(repr=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None


Manifest = ImageManifest | ImageIndex


def parse_manifest(
    raw: bytes, media_type: str | None = None, *, algorithm: str = "sha256"
) -> Manifest:
    """Parse manifest bytes as received; the digest is computed over `raw` itself.

    `media_type` is the Content-Type the registry sent (or the descriptor's); the
    document's own `mediaType` wins when present, as the registry itself decides by it.
    """
    if len(raw) > mt.MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(raw)} bytes, over the 4 MiB limit")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:  # nested deeper than the parser goes: no manifest is
        raise ManifestError("manifest is not valid JSON: nested too deep") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("manifest mediaType is not a string")
    kind = _classify(doc, declared or _strip_params(media_type))
    digest = Digest.of(raw, algorithm)
    subject = _optional_descriptor(doc, "subject")
    artifact_type = _optional_str(doc, "artifactType")
    if kind in mt.INDEXES:
        return ImageIndex(
            media_type=kind,
            manifests=tuple(_descriptors(doc, "manifests")),
            digest=digest,
            raw=raw,
            subject=subject,
            artifact_type=artifact_type,
        )
    config = doc.get("config")
    if not isinstance(config, dict):
        raise ManifestError("image manifest has no config descriptor")
    return ImageManifest(
        media_type=kind,
        config=parse_descriptor(config, "config"),
        layers=tuple(_descriptors(doc, "layers")),
        digest=digest,
        raw=raw,
        subject=subject,
        artifact_type=artifact_type,
    )


def _strip_params(content_type: str | None) -> str | None:
    return content_type.split(";")[0].strip() if content_type else None


def _classify(doc: Mapping[str, Any], media_type: str | None) -> str:
    if media_type in mt.SCHEMA1 or doc.get("schemaVersion") == 1:
        raise UnsupportedManifestError(
            "Docker schema1 manifest: unsupported (deprecated; push it again as schema2 or OCI)"
        )
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"manifest schemaVersion is {doc.get('schemaVersion')!r}, not 2")
    if media_type in mt.MANIFESTS:
        return media_type
    if media_type is not None and media_type not in ("application/json", ""):
        raise ManifestError(f"unknown manifest media type {media_type!r}")
    # OCI allows mediaType to be absent; decide by shape, as the registry does.
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc:
        return mt.OCI_MANIFEST
    raise ManifestError("manifest has neither config nor manifests")


def _descriptors(doc: Mapping[str, Any], key: str) -> Iterator[Descriptor]:
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise ManifestError(f"manifest field {key!r} is not a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ManifestError(f"manifest {key}[{i}] is not an object")
        yield parse_descriptor(item, f"{key}[{i}]")


def _optional_descriptor(doc: Mapping[str, Any], key: str) -> Descriptor | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"manifest field {key!r} is not an object")
    return parse_descriptor(value, key)


def _optional_str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"manifest field {key!r} is not a string")
    return value


def parse_descriptor(item: Mapping[str, Any], where: str = "descriptor") -> Descriptor:
    media_type = item.get("mediaType")
    digest_text = item.get("digest")
    size = item.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where}: mediaType missing")
    if not isinstance(digest_text, str):
        raise ManifestError(f"{where}: digest missing")
    try:
        digest = Digest.parse(digest_text)
    except InvalidDigestError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    # OCI image-spec descriptor.md: "size ... MUST be a non-negative int64".
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"{where}: size must be a non-negative integer")
    platform = None
    p = item.get("platform")
    if isinstance(p, dict):
        os_, arch = p.get("os"), p.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise ManifestError(f"{where}: platform needs os and architecture")
        variant = p.get("variant")
        platform = Platform(os_, arch, variant if isinstance(variant, str) else None)
    annotations = item.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError(f"{where}: annotations is not an object")
    urls = item.get("urls") or []
    if not isinstance(urls, list):
        raise ManifestError(f"{where}: urls is not a list")
    artifact_type = item.get("artifactType")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        annotations={str(k): str(v) for k, v in annotations.items()},
        urls=tuple(str(u) for u in urls),
    )


# --- what a manifest references --------------------------------------------------------


@dataclass(frozen=True)
class Contents:
    """Everything one manifest names, sorted by what each name is for.

    - `children`: manifests an index lists (an entry whose media type is not a blob type);
      a pull of the index fetches them from this repository.
    - `blobs`: blobs this repository must serve for a pull: the config, the layers that are
      not foreign, and index entries whose media type is a blob type.
    - `foreign`: non-distributable layers (`is_foreign`): a pull fetches them from their
      `urls`, so the registry need not serve them; when their bytes were pushed anyway they
      are still listed, and kept.
    - `subject`: the manifest this one is about (OCI referrers). A pull does not need it and
      garbage collection does not mark it: the arrow points from the referrer to its subject.

    `pull` is what a pull of this manifest asks the registry for; `listed` is every descriptor
    the manifest lists, which is distribution's `Manifest.References()` and so exactly what
    its garbage collection marks (registry/storage/garbagecollect.go `markManifestReferences`:
    every listed digest is marked, whatever its media type, foreign layers included).
    """

    children: tuple[Descriptor, ...] = ()
    blobs: tuple[Descriptor, ...] = ()
    foreign: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None

    @property
    def pull(self) -> tuple[Descriptor, ...]:
        return (*self.children, *self.blobs)

    @property
    def listed(self) -> tuple[Descriptor, ...]:
        return (*self.children, *self.blobs, *self.foreign)


def contents(manifest: Manifest) -> Contents:
    """What `manifest` references (see `Contents`). The one answer verify, scan and garbage
    collection prediction share; `storage/graph.py`'s fast path is held to it by a test."""
    if isinstance(manifest, ImageIndex):
        children: list[Descriptor] = []
        blobs: list[Descriptor] = []
        foreign: list[Descriptor] = []
        for entry in manifest.manifests:
            if not mt.is_blob_type(entry.media_type):
                children.append(entry)
            elif entry.is_foreign:
                foreign.append(entry)
            else:
                blobs.append(entry)
        return Contents(tuple(children), tuple(blobs), tuple(foreign), manifest.subject)
    layers = [d for d in manifest.layers if not d.is_foreign]
    foreign = [d for d in manifest.layers if d.is_foreign]
    return Contents((), (manifest.config, *layers), tuple(foreign), manifest.subject)


def schema1_contents(raw: bytes) -> Contents:
    """What a Docker schema1 manifest references: its `fsLayers[].blobSum`, once each, with
    no sizes (`size` -1). Distribution 2.8 still stores and serves schema1, and its garbage
    collection marks these blobs (manifest/schema1 `References`). Raises ManifestError."""
    try:
        doc = json.loads(raw)
        sums = [Digest.parse(item["blobSum"]) for item in doc["fsLayers"]]
    except (ValueError, KeyError, TypeError, RecursionError, InvalidDigestError) as exc:
        raise ManifestError(f"schema1 manifest without readable fsLayers: {exc}") from None
    blobs = tuple(Descriptor(mt.DOCKER_SCHEMA1_LAYER, d, -1) for d in dict.fromkeys(sums))
    return Contents(blobs=blobs)


def contents_of(raw: bytes, media_type: str | None = None) -> tuple[str, Contents]:
    """(media type, contents) of manifest bytes, schema1 included. Raises ManifestError."""
    try:
        manifest = parse_manifest(raw, media_type)
    except UnsupportedManifestError:
        return mt.DOCKER_SCHEMA1, schema1_contents(raw)
    return manifest.media_type, contents(manifest)
