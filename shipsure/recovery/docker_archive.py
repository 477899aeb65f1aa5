"""A `docker save` archive as a content source (`--from docker-archive:PATH`).

Two formats exist, and they differ in what they can give back:

- Docker 25 and later write an OCI image layout inside the tar (`oci-layout`, `index.json`,
  `blobs/sha256/...`) beside the legacy `manifest.json`: every manifest and blob as pushed,
  so everything can be restored with its original digest.
- The legacy format (older docker, and `skopeo copy ... docker-archive:`) keeps the image
  config byte for byte but stores each layer *uncompressed* and no manifest at all, and
  only one platform. A registry's gzip'd layers and its manifests therefore have other
  digests, or none: from such an archive shipsure restores exactly the blobs whose bytes
  hash to the digest the registry needs (configs; uncompressed layers), and names the rest
  for a rebuild. It never rewrites a manifest to fit the archive: that would change the
  digest every consumer pins.

Content is found by digest: members under `blobs/<alg>/` by name, every other regular
member by hashing it once (the index is built on first use).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading
from pathlib import Path

from shipsure import mediatypes as mt
from shipsure.errors import InvalidDigestError
from shipsure.model import Digest
from shipsure.recovery.interface import Sink, SourceError, SourceManifest

READ_CHUNK = 1024 * 1024
REF_NAME = "org.opencontainers.image.ref.name"


class DockerArchiveSource:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            # Kept open for the source's life; close() closes it.
            self._tar = tarfile.open(self.path, mode="r:*")  # noqa: SIM115
            members = self._tar.getmembers()
        except FileNotFoundError:
            raise SourceError(f"docker-archive:{path}: no such file") from None
        except (OSError, tarfile.TarError) as exc:
            raise SourceError(f"docker-archive:{path}: not a readable tar ({exc})") from None
        self._members = {m.name.removeprefix("./"): m for m in members if m.isfile()}
        if "manifest.json" not in self._members and "index.json" not in self._members:
            raise SourceError(f"docker-archive:{path}: no manifest.json: not a docker save archive")
        self._by_digest: dict[Digest, tarfile.TarInfo] = {}
        for name, member in self._members.items():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "blobs":
                try:
                    self._by_digest[Digest.parse(f"{parts[1]}:{parts[2]}")] = member
                except InvalidDigestError:
                    continue  # not a digest-named member: found by hashing instead
        self._hashed = False
        self.oci_layout = "oci-layout" in self._members and bool(self._by_digest)
        self._tags: dict[str, Digest] = {}
        if "index.json" in self._members:
            self._read_index()

    def _read_index(self) -> None:
        try:
            index = json.loads(self._read_member(self._members["index.json"], 16 * 1024 * 1024))
        except ValueError:
            raise SourceError(f"{self.name}: index.json is not JSON") from None
        entries = index.get("manifests") if isinstance(index, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            annotations = entry.get("annotations") if isinstance(entry, dict) else None
            if not isinstance(annotations, dict):
                continue
            try:
                digest = Digest.parse(str(entry.get("digest")))
            except InvalidDigestError:
                continue
            for key in (REF_NAME, "io.containerd.image.name"):
                value = annotations.get(key)
                if isinstance(value, str):
                    self._tags[value] = digest

    @property
    def name(self) -> str:
        return f"docker-archive:{self.path}"

    @property
    def preserves_manifests(self) -> bool:
        return self.oci_layout

    def resolve_tag(self, repository: str, tag: str) -> Digest | None:
        for key in (f"{repository}:{tag}", f"docker.io/{repository}:{tag}", tag):
            if key in self._tags:
                return self._tags[key]
        for key, digest in self._tags.items():  # "registry.example/team/app:1.0"
            if key.endswith(f"/{repository}:{tag}"):
                return digest
        return None

    def _member(self, digest: Digest) -> tarfile.TarInfo | None:
        found = self._by_digest.get(digest)
        if found is not None:
            return found
        with self._lock:
            if not self._hashed:
                self._hash_members()
        return self._by_digest.get(digest)

    def _hash_members(self) -> None:
        """Legacy archives name members by other things (diff ids, v1 ids): hash each once."""
        indexed = set(self._by_digest.values())
        for member in self._members.values():
            if member in indexed:
                continue
            hasher = hashlib.sha256()
            handle = self._tar.extractfile(member)
            if handle is None:
                continue
            with handle:
                while piece := handle.read(READ_CHUNK):
                    hasher.update(piece)
            self._by_digest.setdefault(Digest("sha256", hasher.hexdigest()), member)
        self._hashed = True

    def _read_member(self, member: tarfile.TarInfo, cap: int) -> bytes:
        with self._lock:
            try:
                handle = self._tar.extractfile(member)
                if handle is None:
                    return b""
                with handle:
                    return handle.read(cap + 1)
            except (OSError, tarfile.TarError) as exc:
                raise SourceError(f"{self.name}: {member.name}: {exc}") from None

    def manifest(self, repository: str, digest: Digest) -> SourceManifest | None:
        member = self._member(digest)
        if member is None:
            return None
        return SourceManifest(self._read_member(member, mt.MAX_MANIFEST_BYTES), None)

    def has_blob(self, repository: str, digest: Digest) -> bool:
        return self._member(digest) is not None

    def copy_blob(self, repository: str, digest: Digest, limit: int, sink: Sink) -> bool:
        member = self._member(digest)
        if member is None:
            return False
        # One reader at a time: a tar file has one position.
        with self._lock:
            try:
                handle = self._tar.extractfile(member)
                if handle is None:
                    return False
                with handle:
                    total = 0
                    while total <= limit and (piece := handle.read(READ_CHUNK)):
                        sink(piece)
                        total += len(piece)
            except (OSError, tarfile.TarError) as exc:
                raise SourceError(f"{self.name}: {member.name}: {exc}") from None
        return True

    def close(self) -> None:
        self._tar.close()
