"""Every OCI and Docker media type shipsure knows, in one place."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1 = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
MANIFESTS = IMAGE_MANIFESTS | INDEXES

# registry-facts §3: without the OCI types an OCI index by tag is a 404, and without the
# Docker types a schema2 manifest by tag is rewritten to schema1. Always send all four.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

# BuildKit attaches attestations as index entries with this annotation; they are real
# manifests in the index and must be walked, but they have no runnable platform.
ATTESTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
ATTESTATION_MANIFEST = "attestation-manifest"

# distribution caps manifests at 4 MiB (registry/handlers/manifests.go, maxManifestBodySize).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# Docker schema1's layers carry no media type; distribution's schema1 package calls them this.
DOCKER_SCHEMA1_LAYER = "application/vnd.docker.container.image.rootfs.diff+x-gtar"

# What an index entry is when its media type is not a manifest type: a blob. Exact types, then
# families by prefix (every OCI layer variant, Docker rootfs layers, Docker's config).
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG, OCI_EMPTY})
_BLOB_PREFIXES = (
    "application/vnd.oci.image.layer.",
    "application/vnd.oci.image.config.",
    "application/vnd.docker.image.rootfs.",
    "application/vnd.docker.container.image.",
)


def is_blob_type(media_type: str) -> bool:
    """True for config and layer media types: content stored as a blob, never a manifest."""
    return media_type in CONFIGS or media_type.startswith(_BLOB_PREFIXES)
