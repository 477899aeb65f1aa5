"""Distribution 2.8's storage layout as pure path math (registry/storage/paths.go).

Paths are relative to the storage root with `/` separators:

    docker/registry/v2/blobs/<alg>/<hex[:2]>/<hex>/data
    docker/registry/v2/repositories/<repo>/_layers/<alg>/<hex>/link
    docker/registry/v2/repositories/<repo>/_manifests/revisions/<alg>/<hex>/link
    docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/current/link
    docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/index/<alg>/<hex>/link
    docker/registry/v2/repositories/<repo>/_uploads/<uuid>/{data,startedat,hashstates/...}

A `link` file holds the digest text (`sha256:<hex>`), no newline. Repository names may
contain `/`: a folder is a repository when it holds `_manifests`, `_layers` or `_uploads`.
"""

from __future__ import annotations

import re

from shipsure.model import DIGEST_ALGORITHMS

V2 = "docker/registry/v2"
BLOBS = f"{V2}/blobs"
REPOSITORIES = f"{V2}/repositories"

LAYERS_DIR = "_layers"
MANIFESTS_DIR = "_manifests"
UPLOADS_DIR = "_uploads"
REPOSITORY_MARKERS = frozenset({LAYERS_DIR, MANIFESTS_DIR, UPLOADS_DIR})

# Algorithms distribution can store (digest.Algorithm); sha256 is what 2.8 writes.
ALGORITHMS = DIGEST_ALGORITHMS

# A link is a digest and nothing else. Distribution's own reader (readlink in
# registry/storage/blobstore.go) calls digest.Parse on the whole content, so a trailing
# newline or space already makes the link unusable: match exactly (fullmatch: `$` would
# accept a trailing newline), not leniently.
_LINK_RE = re.compile(
    "|".join(f"{a}:[0-9a-f]{{{n}}}" for a, n in DIGEST_ALGORITHMS.items()).encode()
)

# Largest link file worth reading: a sha512 digest is 135 bytes.
LINK_READ_LIMIT = 256


def blob_dir(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{BLOBS}/{algorithm}/{hex_[:2]}/{hex_}"


def blob_data(digest: str) -> str:
    return blob_dir(digest) + "/data"


def repository_dir(repository: str) -> str:
    return f"{REPOSITORIES}/{repository}"


def layers_dir(repository: str, algorithm: str = "sha256") -> str:
    return f"{REPOSITORIES}/{repository}/{LAYERS_DIR}/{algorithm}"


def layer_link_dir(repository: str, digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{layers_dir(repository, algorithm)}/{hex_}"


def layer_link(repository: str, digest: str) -> str:
    return layer_link_dir(repository, digest) + "/link"


def revisions_dir(repository: str, algorithm: str = "sha256") -> str:
    return f"{REPOSITORIES}/{repository}/{MANIFESTS_DIR}/revisions/{algorithm}"


def revision_link_dir(repository: str, digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{revisions_dir(repository, algorithm)}/{hex_}"


def revision_link(repository: str, digest: str) -> str:
    return revision_link_dir(repository, digest) + "/link"


def tags_dir(repository: str) -> str:
    return f"{REPOSITORIES}/{repository}/{MANIFESTS_DIR}/tags"


def tag_dir(repository: str, tag: str) -> str:
    return f"{tags_dir(repository)}/{tag}"


def tag_current_link(repository: str, tag: str) -> str:
    return f"{tag_dir(repository, tag)}/current/link"


def tag_index_link(repository: str, tag: str, digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{tag_dir(repository, tag)}/index/{algorithm}/{hex_}/link"


def uploads_dir(repository: str) -> str:
    return f"{REPOSITORIES}/{repository}/{UPLOADS_DIR}"


def upload_dir(repository: str, upload_id: str) -> str:
    return f"{uploads_dir(repository)}/{upload_id}"


def upload_startedat(repository: str, upload_id: str) -> str:
    return f"{upload_dir(repository, upload_id)}/startedat"


def parse_link(raw: bytes) -> str | None:
    """The digest a link file names, or None when its content is not exactly a digest."""
    return raw.decode() if _LINK_RE.fullmatch(raw) else None


CANONICAL_ALGORITHM = "sha256"


def link_serves(digest: str, target: str | None) -> str | None:
    """For a `_layers` link of `digest` holding `target`: the digest whose data it serves,
    `digest` itself or, when the blob was pushed under another algorithm, the canonical
    digest of another algorithm the registry stored it under; None when malformed."""
    if target is None:
        return None
    if target == digest:
        return digest
    # distribution stores every blob under its canonical algorithm (go-digest Canonical,
    # sha256); only a link of another algorithm may name a digest other than its own.
    canonical = f"{CANONICAL_ALGORITHM}:"
    return target if target.startswith(canonical) and not digest.startswith(canonical) else None


def intended_digest(raw: bytes) -> str | None:
    """The digest a malformed link was meant to hold: its content without the whitespace
    around it (a trailing newline or CRLF from a hand-written link, spaces), when that is
    exactly a digest; else None."""
    stripped = raw.strip()
    return stripped.decode() if _LINK_RE.fullmatch(stripped) else None


def is_digest_folder(algorithm: str, name: str) -> bool:
    """A `<hex>` folder name under `<alg>/` that forms a valid digest."""
    want = ALGORITHMS.get(algorithm)
    # str.strip in C: empty after stripping every hex digit means "only lowercase hex".
    return want is not None and len(name) == want and not name.strip(_HEX_DIGITS)


_HEX_DIGITS = "0123456789abcdef"


def link_content(digest: str) -> bytes:
    """What distribution writes into a link file: the digest, no newline."""
    return digest.encode()


# Temp files of an interrupted write, left beside the file they were to replace:
# - shipsure's own (`fileio.write_atomic`, tempfile.mkstemp): `.<name>.<8 random>.tmp`;
# - distribution's filesystem driver (PutContent in registry/storage/driver/filesystem/
#   driver.go, 3.x): `<name>.<uuid>.tmp`.
_TEMP_NAME = re.compile(
    r"\.[^/]+\.[a-z0-9_]{8}\.tmp|[^/]+\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12}\.tmp",
    re.ASCII,
)
# Older than this, no write is still under way (a link or manifest write takes
# milliseconds): the file is a leftover that `scan --apply` may remove.
TEMP_MAX_AGE = 3600.0


def is_temp_name(name: str) -> bool:
    """Whether a file name is one an interrupted atomic write leaves behind."""
    return _TEMP_NAME.fullmatch(name) is not None
