"""The finding kinds `shipsure scan` reports, by name; ids, meanings and severities live in
`shipsure.findings.KINDS`.

Severity follows what breaks: a tag that no longer resolves is critical; anything a tag
reaches (tag -> index -> child -> blob) is the kind's default severity; the same fault on
content only reachable by digest is the kind's `untagged` severity.
"""

from __future__ import annotations

from shipsure.findings import Severity, kind

# The tag itself does not resolve (registry-facts §4: "tag points to a revision with no data").
TAG_REVISION_MISSING = kind("tag-revision-missing").id
TAG_MANIFEST_MISSING = kind("tag-manifest-missing").id
TAG_LINK_MISSING = kind("tag-link-missing").id
# Reached through a tag or by digest.
REVISION_DATA_MISSING = kind("revision-data-missing").id
INDEX_CHILD_RELINKABLE = kind("index-child-relinkable").id
INDEX_CHILD_LOST = kind("index-child-lost").id
MANIFEST_DIGEST_MISMATCH = kind("manifest-digest-mismatch").id
MANIFEST_INVALID = kind("manifest-invalid").id
BLOB_MISSING = kind("blob-missing").id
BLOB_SIZE_MISMATCH = kind("blob-size-mismatch").id
BLOB_DIGEST_MISMATCH = kind("blob-digest-mismatch").id
LAYER_LINK_MISSING = kind("layer-link-missing").id
MALFORMED_LINK = kind("malformed-link").id
# Not on any pull path.
LAYER_LINK_DANGLING = kind("layer-link-dangling").id
BLOB_UNREFERENCED = kind("blob-unreferenced").id
UPLOAD_STALE = kind("upload-stale").id
LINK_OUTSIDE_ROOT = kind("link-outside-root").id
TEMP_FILE_STALE = kind("temp-file-stale").id

# Kinds about storage no tag leads to: their findings carry no `tags` list.
NOT_TAGGED = frozenset({BLOB_UNREFERENCED, UPLOAD_STALE, LINK_OUTSIDE_ROOT, TEMP_FILE_STALE})

# Kinds that mean the tag itself no longer resolves.
TAG_LEVEL = frozenset({TAG_REVISION_MISSING, TAG_MANIFEST_MISSING, TAG_LINK_MISSING})


def severity(kind_id: str, tags: int, *, breaks_tag: bool = False) -> Severity:
    """`kind_id`'s severity when `tags` tags reach the fault; critical when the fault is what
    keeps a tag from resolving (`breaks_tag`, e.g. a malformed `current/link`)."""
    if breaks_tag:
        return Severity.CRITICAL
    entry = kind(kind_id)
    return entry.severity if tags else entry.untagged_severity
