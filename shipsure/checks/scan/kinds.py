"""The finding kinds `shipsure scan` reports: stable ids, what each means, its severity.

Severity follows what breaks: a tag that no longer resolves is critical; anything a tag
reaches (tag -> index -> child -> blob) is an error; the same fault on content only
reachable by digest is a warning; space that garbage collection would reclaim is info.
"""

from __future__ import annotations

from shipsure.findings import Severity

# The tag itself answers 404 (registry-facts §4: "tag points to a revision with no data").
TAG_REVISION_MISSING = "tag-revision-missing"  # current/link names a digest with no revision link
TAG_MANIFEST_MISSING = "tag-manifest-missing"  # revision link present, manifest data gone
TAG_LINK_MISSING = "tag-link-missing"  # tag folder without current/link: listed, never served
# Reached through a tag or by digest.
REVISION_DATA_MISSING = "revision-data-missing"  # revision link whose manifest data is gone
INDEX_CHILD_RELINKABLE = "index-child-relinkable"  # child without revision link, data verified
INDEX_CHILD_LOST = "index-child-lost"  # child without revision link, data gone or corrupt
MANIFEST_DIGEST_MISMATCH = "manifest-digest-mismatch"  # manifest bytes hash to another digest
MANIFEST_INVALID = "manifest-invalid"  # verified bytes that are not a manifest we can read
BLOB_MISSING = "blob-missing"  # a manifest names a blob whose data is gone
BLOB_SIZE_MISMATCH = "blob-size-mismatch"  # data size differs from the descriptor's size
BLOB_DIGEST_MISMATCH = "blob-digest-mismatch"  # --verify-content: data hashes to another digest
LAYER_LINK_MISSING = "layer-link-missing"  # data present, but this repository may not serve it
MALFORMED_LINK = "malformed-link"  # a link file whose content is not exactly its digest
# Not on any pull path.
LAYER_LINK_DANGLING = "layer-link-dangling"  # _layers link whose data is gone, nothing uses it
BLOB_UNREFERENCED = "blob-unreferenced"  # no manifest anywhere names it: a GC candidate
UPLOAD_STALE = "upload-stale"  # unfinished upload older than the threshold

# Kinds that mean the tag itself no longer resolves.
TAG_LEVEL = frozenset({TAG_REVISION_MISSING, TAG_MANIFEST_MISSING, TAG_LINK_MISSING})

# Severity when no tag reaches the fault (content only pullable by digest, or none at all).
UNTAGGED_SEVERITY: dict[str, Severity] = {
    LAYER_LINK_DANGLING: Severity.WARNING,
    BLOB_UNREFERENCED: Severity.INFO,
    UPLOAD_STALE: Severity.WARNING,
}


def severity(kind: str, tags: int) -> Severity:
    if kind in TAG_LEVEL:
        return Severity.CRITICAL
    if tags:
        return Severity.ERROR
    return UNTAGGED_SEVERITY.get(kind, Severity.WARNING)
