"""An OCI image layout on disk as a content source (`--from oci:PATH`).

OCI image-spec image-layout.md: `oci-layout` names the version, `index.json` lists the
layout's manifests, and every blob and manifest lives at `blobs/<alg>/<encoded>`. Tags are
the `org.opencontainers.image.ref.name` annotation of an `index.json` entry (skopeo's
`oci:DIR:TAG` writes the tag there; `repo:tag` is accepted as well). A layout has no
repositories: content is found by digest whatever repository asks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from shipsure import mediatypes as mt
from shipsure.errors import InvalidDigestError
from shipsure.model import Digest
from shipsure.recovery.interface import Sink, SourceError, SourceManifest

REF_NAME = "org.opencontainers.image.ref.name"
READ_CHUNK = 1024 * 1024


class OciLayoutSource:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        marker = self.path / "oci-layout"
        try:
            version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
            index = json.loads((self.path / "index.json").read_bytes())
        except FileNotFoundError as exc:
            raise SourceError(f"oci:{path}: not an OCI layout ({exc.filename} missing)") from None
        except (OSError, ValueError, AttributeError) as exc:
            raise SourceError(f"oci:{path}: unreadable OCI layout ({exc})") from None
        if not isinstance(version, str) or not isinstance(index, dict):
            raise SourceError(f"oci:{path}: not an OCI layout (oci-layout or index.json)")
        self._tags: dict[str, tuple[Digest, str | None]] = {}
        entries = index.get("manifests")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            annotations = entry.get("annotations")
            name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
            digest = entry.get("digest")
            if isinstance(name, str) and isinstance(digest, str):
                try:
                    parsed = Digest.parse(digest)
                except InvalidDigestError:
                    continue  # an entry we cannot use
                media_type = entry.get("mediaType")
                self._tags[name] = (parsed, media_type if isinstance(media_type, str) else None)

    @property
    def name(self) -> str:
        return f"oci:{self.path}"

    @property
    def preserves_manifests(self) -> bool:
        return True

    def resolve_tag(self, repository: str, tag: str) -> Digest | None:
        found = self._tags.get(f"{repository}:{tag}") or self._tags.get(tag)
        return found[0] if found else None

    def _blob_path(self, digest: Digest) -> Path:
        return self.path / "blobs" / digest.algorithm / digest.hex

    def manifest(self, repository: str, digest: Digest) -> SourceManifest | None:
        path = self._blob_path(digest)
        try:
            with path.open("rb") as handle:
                raw = handle.read(mt.MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(f"{self.name}: {path}: {exc.strerror or exc}") from None
        listed = next((m for d, m in self._tags.values() if d == digest), None)
        return SourceManifest(raw, listed)

    def has_blob(self, repository: str, digest: Digest) -> bool:
        return os.path.isfile(self._blob_path(digest))

    def copy_blob(self, repository: str, digest: Digest, limit: int, sink: Sink) -> bool:
        path = self._blob_path(digest)
        try:
            with path.open("rb") as handle:
                total = 0
                while total <= limit and (piece := handle.read(READ_CHUNK)):
                    sink(piece)
                    total += len(piece)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SourceError(f"{self.name}: {path}: {exc.strerror or exc}") from None
        return True

    def close(self) -> None:
        return
