"""What distribution's garbage collector makes of bytes: digests, repository names and the
`References()` of a manifest, read the way its Go code reads them.

Pure. This is not shipsure's own manifest model (that one asks "what does a pull need" and
verifies digests); it answers "what does `registry garbage-collect` mark", which differs:

- `References()` lists every descriptor a manifest names, whatever its media type: config and
  all layers (foreign and non-distributable ones included) of an image manifest, every entry
  of an index. `subject` is not a reference (distribution v3.1.1 manifest/ocischema).
- Manifest bytes are not verified against their digest when the collector reads them
  (registry/storage/manifeststore.go Get); they only have to unmarshal.
- Go's encoding/json matches keys case-insensitively, ignores unknown keys, replaces invalid
  UTF-8 inside strings, and fails on a value of the wrong type (after reading the rest).
- A link is `digest.Parse(whole file content)`: a trailing newline makes it invalid, and the
  collector stops with that error (registry/storage/blobstore.go readlink).

Errors are `GoError(message)`: the text the collector would wrap in "failed to mark: ...".
"""

from __future__ import annotations

import json
import re
from typing import Any

from shipsure import mediatypes as mt

# go-digest: the algorithms linked into the registry, with their hex lengths.
_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+\Z")
_DIGEST_SHAPE_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")


class GoError(Exception):
    """What the collector's Go code would return; `str()` is its message."""


_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}\Z")


def parse_digest(text: str) -> str:
    """go-digest `digest.Parse`: the digest, or GoError with its message."""
    if _SHA256_RE.match(text):
        return text
    i = text.find(":")
    if i <= 0 or i + 1 == len(text):
        raise GoError("invalid checksum digest format")
    algorithm, encoded = text[:i], text[i + 1 :]
    size = _ALGORITHMS.get(algorithm)
    if size is None:
        if not _DIGEST_SHAPE_RE.match(text):
            raise GoError("invalid checksum digest format")
        raise GoError("unsupported digest algorithm")
    if len(encoded) != size:
        raise GoError("invalid checksum digest length")
    if not _HEX_RE.match(encoded):
        raise GoError("invalid checksum digest format")
    return text


def parse_link(raw: bytes) -> str:
    """A link file's digest as the collector reads it (`digest.Parse(string(content))`)."""
    return parse_digest(raw.decode("utf-8", "replace"))


def is_valid_digest(text: str) -> bool:
    try:
        parse_digest(text)
    except GoError:
        return False
    return True


# distribution/reference: an optional domain, then lowercase path components.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*\Z")
NAME_TOTAL_LENGTH_MAX = 255


def check_repository_name(name: str) -> None:
    """`reference.WithName`: raises GoError when the collector could not parse the name."""
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise GoError(
            f"failed to parse repo name {name}: repository name must not be more "
            f"than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if not _NAME_RE.match(name):
        raise GoError(f"failed to parse repo name {name}: invalid reference format")


# --- References() ------------------------------------------------------------------------

_SCHEMA2 = mt.DOCKER_MANIFEST
_OCI_MANIFEST = mt.OCI_MANIFEST
_LIST = mt.DOCKER_MANIFEST_LIST
_OCI_INDEX = mt.OCI_INDEX


def references(raw: bytes, version: int) -> list[str]:
    """The digests `manifest.References()` yields for these bytes in distribution `version`
    (2: v2.8.x, 3: v3.x), in order; GoError when `manifestService.Get` fails on them."""
    try:
        doc = json.loads(raw.decode("utf-8", "replace"))
    except ValueError as exc:
        raise GoError(f"invalid character in manifest JSON: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise GoError("json: cannot unmarshal manifest into Go value of type manifest.Versioned")
    schema_version = _int(_get(doc, "schemaVersion"), "schemaVersion")
    media_type = _str(_get(doc, "mediaType"), "mediaType")
    if schema_version == 1 and version == 2:
        return _schema1_references(doc)
    if schema_version != 2:
        raise GoError(f"unrecognized manifest schema version {schema_version}")
    if media_type == _SCHEMA2:
        return _image_references(doc, version, require=_SCHEMA2)
    if media_type == _OCI_MANIFEST:
        return _image_references(doc, version, require=None)
    if media_type in (_LIST, _OCI_INDEX):
        return _index_references(doc, version)
    if media_type == "":
        # No media type: an index when `manifests` is a list (even empty), else an image.
        try:
            refs = _index_references(doc, version)
        except GoError:
            if version == 2:
                # v2.8.2 type-asserts the failed result: the collector panics here.
                raise GoError(
                    "panic: interface conversion on a manifest without mediaType"
                ) from None
            raise
        if isinstance(_get(doc, "manifests"), list):
            return refs
        return _image_references(doc, version, require=None)
    raise GoError(f"unrecognized manifest content type {media_type}")


def _schema1_references(doc: dict[str, Any]) -> list[str]:
    layers = _get(doc, "fsLayers")
    if layers is None:
        return []
    if not isinstance(layers, list):
        raise GoError("json: cannot unmarshal fsLayers")
    out = []
    for item in layers:
        if isinstance(item, dict):
            out.append(_str(_get(item, "blobSum"), "blobSum"))
        elif item is not None:
            raise GoError("json: cannot unmarshal fsLayers entry")
    return out


def _image_references(doc: dict[str, Any], version: int, require: str | None) -> list[str]:
    media_type = _str(_get(doc, "mediaType"), "mediaType")
    config = _get(doc, "config")
    layers = _get(doc, "layers")
    out = [_descriptor(config, version) if config is not None else ""]
    if layers is not None:
        if not isinstance(layers, list):
            raise GoError("json: cannot unmarshal layers into []Descriptor")
        out.extend(_descriptor(item, version) for item in layers)
    subject = _get(doc, "subject")
    if subject is not None and version == 3:
        _descriptor(subject, version)
    _check_annotations(_get(doc, "annotations"))
    if require is not None and media_type != require:
        raise GoError(f"mediaType in manifest should be '{require}' not '{media_type}'")
    if require is None and media_type not in ("", _OCI_MANIFEST):
        raise GoError(
            f"if present, mediaType in manifest should be '{_OCI_MANIFEST}' not '{media_type}'"
        )
    return out


def _index_references(doc: dict[str, Any], version: int) -> list[str]:
    entries = _get(doc, "manifests")
    _check_annotations(_get(doc, "annotations"))
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise GoError("json: cannot unmarshal manifests into []ManifestDescriptor")
    return [_descriptor(item, version, platform=True) for item in entries]


def _descriptor(value: Any, version: int, platform: bool = False) -> str:
    """A descriptor's digest after Go-style type checks of the fields it decodes."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        raise GoError("json: cannot unmarshal descriptor")
    digest = _str(_get(value, "digest"), "digest")
    _str(_get(value, "mediaType"), "mediaType")
    _int(_get(value, "size"), "size")
    urls = _get(value, "urls")
    if urls is not None and (
        not isinstance(urls, list) or not all(u is None or isinstance(u, str) for u in urls)
    ):
        raise GoError("json: cannot unmarshal urls into []string")
    _check_annotations(_get(value, "annotations"))
    plat = _get(value, "platform")
    if plat is not None and not isinstance(plat, dict):
        raise GoError("json: cannot unmarshal platform")
    if isinstance(plat, dict):
        for key in ("architecture", "os", "os.version", "variant"):
            _str(_get(plat, key), key)
    if version == 3:
        data = _get(value, "data")
        if data is not None and not isinstance(data, str):
            raise GoError("json: cannot unmarshal data into []byte")
        _str(_get(value, "artifactType"), "artifactType")
    return digest


def _check_annotations(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        v is None or isinstance(v, str) for v in value.values()
    ):
        raise GoError("json: cannot unmarshal annotations into map[string]string")


_FIELDS = (
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "manifests",
    "subject",
    "annotations",
    "fsLayers",
    "blobSum",
    "digest",
    "size",
    "urls",
    "platform",
    "data",
    "artifactType",
    "architecture",
    "os",
    "os.version",
    "variant",
)
_CANONICAL = frozenset(_FIELDS)
_BY_FOLDED = {name.lower(): name for name in _FIELDS}


def _get(obj: dict[str, Any], key: str) -> Any:
    """Go's field matching: keys are matched ignoring case, the last one read wins."""
    if obj.keys() <= _CANONICAL:
        return obj.get(key)
    folded = key.lower()
    found: Any = None
    for k, v in obj.items():
        if _BY_FOLDED.get(k.lower(), k.lower()) == _BY_FOLDED.get(folded, folded):
            found = v
    return found


def _int(value: Any, name: str) -> int:
    if value is None:
        return 0
    if type(value) is not int:
        raise GoError(f"json: cannot unmarshal {type(value).__name__} into Go field {name}")
    return value


def _str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GoError(
            f"json: cannot unmarshal {type(value).__name__} into Go field {name} of type string"
        )
    return value
