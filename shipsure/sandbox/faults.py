"""Break a registry's filesystem storage the ways registry-facts §4 lists.

Each function makes exactly one fault, named after its row in the table, and works on the
storage root the registry was started with (paths of registry-facts §2). They touch only the
files the fault is about, so the HTTP symptom a test then sees is the fault's and no other.
The path helpers are shared with the tests and the demo.
"""

from __future__ import annotations

import datetime
import shutil
import uuid
from pathlib import Path

from shipsure import fileio
from shipsure.sandbox import SandboxError

# --- paths (registry-facts §2) -------------------------------------------------------


def _hex(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256" or len(hex_part) != 64:
        raise SandboxError(f"digest {digest!r} is not sha256:<64 hex>")
    return hex_part


def v2_root(root: Path) -> Path:
    return root / "docker" / "registry" / "v2"


def blob_folder(root: Path, digest: str) -> Path:
    hex_part = _hex(digest)
    return v2_root(root) / "blobs" / "sha256" / hex_part[:2] / hex_part


def blob_data_path(root: Path, digest: str) -> Path:
    """The global `data` file of a blob or manifest."""
    return blob_folder(root, digest) / "data"


def repository_path(root: Path, repo: str) -> Path:
    return v2_root(root) / "repositories" / repo


def layer_link_folder(root: Path, repo: str, digest: str) -> Path:
    return repository_path(root, repo) / "_layers" / "sha256" / _hex(digest)


def layer_link_path(root: Path, repo: str, digest: str) -> Path:
    """`_layers/sha256/<hex>/link`: the repository may serve this blob."""
    return layer_link_folder(root, repo, digest) / "link"


def revision_folder(root: Path, repo: str, digest: str) -> Path:
    return repository_path(root, repo) / "_manifests" / "revisions" / "sha256" / _hex(digest)


def revision_link_path(root: Path, repo: str, digest: str) -> Path:
    """`_manifests/revisions/sha256/<hex>/link`: the repository may serve this manifest."""
    return revision_folder(root, repo, digest) / "link"


def tags_folder(root: Path, repo: str) -> Path:
    return repository_path(root, repo) / "_manifests" / "tags"


def tag_folder(root: Path, repo: str, tag: str) -> Path:
    return tags_folder(root, repo) / tag


def tag_current_link_path(root: Path, repo: str, tag: str) -> Path:
    """`tags/<tag>/current/link`: the digest the tag resolves to."""
    return tag_folder(root, repo, tag) / "current" / "link"


def tag_index_link_path(root: Path, repo: str, tag: str, digest: str) -> Path:
    """`tags/<tag>/index/sha256/<hex>/link`: one entry of the tag's history."""
    return tag_folder(root, repo, tag) / "index" / "sha256" / _hex(digest) / "link"


def upload_folder(root: Path, repo: str, upload_uuid: str) -> Path:
    return repository_path(root, repo) / "_uploads" / upload_uuid


def read_link(path: Path) -> str:
    """A link file's digest text (the registry writes it without a newline)."""
    return path.read_text().strip()


def tagged_digest(root: Path, repo: str, tag: str) -> str:
    return read_link(tag_current_link_path(root, repo, tag))


def write_atomically(path: Path, data: bytes) -> None:
    """Write as the registry does: temp file beside the target, then rename."""
    fileio.write_atomic(path, data, mode=0o644)


def _must_exist(path: Path, what: str) -> None:
    if not path.exists():
        raise SandboxError(f"cannot break {what}: {path} does not exist")


# --- faults (registry-facts §4, one per row) ------------------------------------------


def remove_blob_data(root: Path, digest: str) -> Path:
    """Fault "layer data removed, repo link kept" (also "config data removed").

    Deletes the global `data` file; every repository's `_layers` link stays, dangling.
    Returns the removed path.
    """
    path = blob_data_path(root, digest)
    _must_exist(path, f"blob {digest}")
    path.unlink()
    return path


def remove_layer_link(root: Path, repo: str, digest: str) -> Path:
    """Fault "repo `_layers` link removed, data kept": 404 in this repository only."""
    folder = layer_link_folder(root, repo, digest)
    _must_exist(folder, f"layer link of {digest} in {repo}")
    shutil.rmtree(folder)
    return folder


def remove_manifest_data(root: Path, digest: str) -> Path:
    """Fault "index child's manifest data removed": the revision link dangles."""
    return remove_blob_data(root, digest)


def remove_revision_link(root: Path, repo: str, digest: str) -> Path:
    """Fault "index child's revision link removed" (the state GC -m leaves behind).

    Removes the whole `revisions/sha256/<hex>/` folder as GC does; the data stays, so the
    manifest can be re-linked.
    """
    folder = revision_folder(root, repo, digest)
    _must_exist(folder, f"revision {digest} in {repo}")
    shutil.rmtree(folder)
    return folder


def dangle_tag(root: Path, repo: str, tag: str) -> str:
    """Fault "tag points to a revision with no data": the tag HEAD itself answers 404.

    Removes the data of the manifest the tag names (links kept). Returns that digest.
    """
    digest = tagged_digest(root, repo, tag)
    remove_blob_data(root, digest)
    return digest


def corrupt_blob(root: Path, digest: str) -> Path:
    """Fault "layer bytes corrupted, same size": HEAD and GET still answer 200.

    Flips every bit of the middle byte, so the size stays and sha256(data) != digest.
    """
    path = blob_data_path(root, digest)
    _must_exist(path, f"blob {digest}")
    data = bytearray(path.read_bytes())
    if not data:
        raise SandboxError(f"cannot corrupt blob {digest}: it is empty")
    middle = len(data) // 2
    data[middle] ^= 0xFF
    write_atomically(path, bytes(data))
    return path


def corrupt_manifest(root: Path, digest: str) -> Path:
    """Fault "child manifest bytes corrupted": GET 200, body sha256 != digest.

    Turns one whitespace byte into a tab, so the JSON stays valid and means the same (the
    registry would answer 500 for unparseable bytes) while size stays and the digest breaks.
    Bytes without whitespace get a flipped middle byte instead.
    """
    path = blob_data_path(root, digest)
    _must_exist(path, f"manifest {digest}")
    data = path.read_bytes()
    position = data.find(b" ")
    if position < 0:
        return corrupt_blob(root, digest)
    write_atomically(path, data[:position] + b"\t" + data[position + 1 :])
    return path


def remove_untagged_revision_data(root: Path, repo: str, digest: str) -> Path:
    """Fault "old revision (by digest only) with data missing": by-digest GET 404.

    Refuses a digest some tag still names, which would be the dangling-tag fault instead.
    """
    tags = tags_folder(root, repo)
    if tags.is_dir():
        for tag in tags.iterdir():
            current = tag / "current" / "link"
            if current.is_file() and read_link(current) == digest:
                raise SandboxError(f"{repo}:{tag.name} still names {digest}; pick an old one")
    _must_exist(revision_link_path(root, repo, digest), f"revision {digest} in {repo}")
    return remove_blob_data(root, digest)


def plant_stale_upload(
    root: Path, repo: str, *, age_days: float = 8.0, size: int = 1024, upload_uuid: str = ""
) -> str:
    """Fault "unfinished upload older than N days": invisible over HTTP, only on disk.

    Writes `_uploads/<uuid>/{data,startedat}` as an abandoned upload leaves them, with
    `startedat` `age_days` in the past (upload purging judges by it). Returns the uuid.
    """
    if not repository_path(root, repo).is_dir():
        raise SandboxError(f"cannot plant an upload: repository {repo} does not exist")
    upload_uuid = upload_uuid or str(uuid.uuid4())
    folder = upload_folder(root, repo, upload_uuid)
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=age_days)
    write_atomically(folder / "data", bytes(range(256)) * (size // 256) + b"\0" * (size % 256))
    # The registry writes time.Now().Format(time.RFC3339) here.
    write_atomically(folder / "startedat", started.strftime("%Y-%m-%dT%H:%M:%SZ").encode())
    return upload_uuid
