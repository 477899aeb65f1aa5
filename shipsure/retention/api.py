"""Retention over the registry API: tags and their trees read, tags and manifests deleted.

Deleting (distribution-spec):
- a manifest no kept tag needs: `DELETE /v2/<repo>/manifests/<digest>` (distribution also
  drops every tag naming it; needs `storage.delete.enabled`);
- only a tag, when other tags or a kept index share its manifest: `DELETE
  /v2/<repo>/manifests/<tag>` where the registry allows it (distribution v3, OCI
  distribution-spec 1.1), else as regclient's `regctl tag delete` does: push a throw-away
  image (its config labelled `delete-tag`) to the tag, then delete that image by digest, so
  the shared manifest and its other tags survive. A throw-away image left by an interrupted
  run is recognised by its label and deleted on the next run. It is pushed only where a
  DELETE is carried out: a registry refusing deletes would be left serving it.

Reads and writes go through the registry client (`HttpRegistry`, and `Pusher` for writes):
its TLS, credentials and token flow, size caps and deadlines, `Link` pagination and error
wording. What this module adds is that a manifest's digest is always its bytes' own: what
it deletes by.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any

from shipsure import mediatypes as mt
from shipsure.gc.reach import manifest_node
from shipsure.model import Digest
from shipsure.plan import Action, AlreadyDone, Precondition, Ready, Refused
from shipsure.registry.http import HttpRegistry
from shipsure.registry.interface import NotFoundError, ProtocolError
from shipsure.registry.push import Pusher, PushError
from shipsure.retention.plan import DELETE_MANIFEST, DELETE_TAG, TagImage
from shipsure.retention.storage import CONFIG_READ_LIMIT, parse_created

DELETE_TAG_LABEL = "delete-tag"
EMPTY_JSON = b"{}"
# A digest no registry holds (of these words): DELETE of it tells whether deletes work.
_ABSENT_DIGEST = "sha256:" + hashlib.sha256(b"shipsure: is DELETE carried out here?").hexdigest()


# --- reads ---------------------------------------------------------------------------------


def tags(registry: HttpRegistry, repository: str) -> list[str] | None:
    """The repository's tags; None when the registry answers NAME_UNKNOWN, which
    distribution does for a repository whose tags are all gone (pushed by digest only, or
    every tag deleted) as well as for one it never held."""
    try:
        return list(registry.tags(repository))
    except NotFoundError as exc:
        if exc.code == "NAME_UNKNOWN":
            return None
        raise


def manifest(registry: HttpRegistry, repository: str, reference: str) -> tuple[bytes, str] | None:
    """The manifest's bytes and the digest to delete it by; None when it is not there."""
    try:
        got = registry.get_manifest(repository, reference)
    except NotFoundError:
        return None
    digest = str(Digest.of(got.raw))
    header = got.digest_header
    if header is not None and header.startswith("sha256:") and header != digest:
        # The digest is what retain deletes by: never one the bytes do not carry.
        raise ProtocolError(
            f"{registry.host}: GET {repository}:{reference}: Docker-Content-Digest {header} "
            f"disagrees with the bytes sent ({digest})"
        )
    return got.raw, header or digest


def head(registry: HttpRegistry, repository: str, reference: str) -> str | None:
    """The digest the registry names for a tag or digest; None when it is not there."""
    try:
        return registry.head_manifest(repository, reference).digest
    except NotFoundError:
        return None


def config(registry: HttpRegistry, repository: str, digest: str) -> bytes | None:
    """An image's config; None when it is not there or larger than any config shipsure
    reads (its creation time is then unknown)."""
    if not Digest.is_valid(digest):
        return None
    try:
        return registry.get_blob(repository, Digest.parse(digest), CONFIG_READ_LIMIT)
    except NotFoundError:
        return None


# --- reading tag trees ---------------------------------------------------------------------


def read_images(
    registry: HttpRegistry, repositories: list[str] | None
) -> tuple[list[TagImage], list[str]]:
    """Every tag's tree, and the named repositories the registry lists no tags for.

    A catalog repository without tags (NAME_UNKNOWN from its tags list) has nothing to
    retain and is passed over; one the user named is returned, so the CLI can say so."""
    # A web server's 404 for a tags list is not "no such repository": ask GET /v2/ first.
    registry.ping()
    repos = repositories if repositories else list(registry.catalog())
    images: list[TagImage] = []
    untagged: list[str] = []
    for repository in repos:
        names = tags(registry, repository)
        if names is None:
            if repositories:
                untagged.append(repository)
            continue
        for tag in names:
            got = manifest(registry, repository, tag)
            if got is None:
                continue
            images.append(_image(registry, repository, tag, *got))
    return images, untagged


def _image(registry: HttpRegistry, repository: str, tag: str, raw: bytes, digest: str) -> TagImage:
    manifests = {digest}
    blobs: dict[str, int] = {digest: len(raw)}
    created: float | None = None
    leftover = False
    pending = [(raw, digest)]
    while pending:
        body, d = pending.pop()
        node = manifest_node(body, d)
        if node is None:
            continue
        for child in node.children:
            if child.digest in manifests:
                continue
            manifests.add(child.digest)
            blobs[child.digest] = child.size
            got = manifest(registry, repository, child.digest)
            if got is not None:
                pending.append((got[0], child.digest))
        for i, ref in enumerate(node.blobs):
            blobs[ref.digest] = ref.size
            if i == 0 and node.media_type in mt.IMAGE_MANIFESTS:
                found = config(registry, repository, ref.digest)
                if found is None:
                    continue
                leftover |= _is_throwaway(found)
                c = parse_created(found)
                if c is not None and (created is None or c > created):
                    created = c
    if leftover:
        created = 0.0
    return TagImage(
        repository, tag, digest, created, frozenset(manifests), blobs, leftover=leftover
    )


def _is_throwaway(config: bytes) -> bool:
    try:
        doc: Any = json.loads(config)
        labels = doc.get("config", {}).get("Labels") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(labels, dict) and DELETE_TAG_LABEL in labels


# --- the writer ---------------------------------------------------------------------------


class ApiWriter:
    def __init__(self, registry: HttpRegistry) -> None:
        self.registry = registry
        self.pusher = Pusher(registry)
        self._deletes_work: set[str] = set()

    def check(self, action: Action) -> Precondition:
        repository = str(action.facts["repository"])
        digest = str(action.facts["digest"])
        if action.op == DELETE_TAG:
            current = head(self.registry, repository, str(action.facts["tag"]))
            if current is None:
                return AlreadyDone("the tag is gone")
            if current != digest and not self._throwaway(repository, current):
                return Refused(f"the tag moved to {current} since the plan")
            return Ready()
        if action.op == DELETE_MANIFEST:
            for tag in action.facts.get("tags", []):
                current = head(self.registry, repository, str(tag))
                if current is not None and current != digest:
                    return Refused(f"tag {tag} moved to {current} since the plan")
            if head(self.registry, repository, digest) is None:
                return AlreadyDone("the manifest is gone")
            return Ready()
        return Refused(f"unknown operation {action.op}")

    def _throwaway(self, repository: str, digest: str) -> bool:
        got = manifest(self.registry, repository, digest)
        if got is None:
            return False
        node = manifest_node(got[0], digest)
        if node is None or not node.blobs:
            return False
        found = config(self.registry, repository, node.blobs[0].digest)
        return found is not None and _is_throwaway(found)

    def run(self, action: Action) -> None:
        repository = str(action.facts["repository"])
        if action.op == DELETE_MANIFEST:
            self.pusher.delete_manifest(repository, str(action.facts["digest"]))
            return
        tag = str(action.facts["tag"])
        current = head(self.registry, repository, tag)
        if current is not None and current != action.facts["digest"]:
            # A throw-away image an interrupted run left on the tag (check() said so).
            self.pusher.delete_manifest(repository, current)
            return
        try:
            # A 404 for a tag just seen means the registry deletes no tags (nor does a
            # refusal: distribution 2.x): then the throw-away image's way.
            if self.pusher.delete_manifest(repository, tag):
                return
        except PushError as exc:
            if exc.status is None:
                raise
        self._refuse_unless_deletes_work(repository, tag)
        throwaway = self._push_throwaway(repository, tag)
        self.pusher.delete_manifest(repository, throwaway)

    def _refuse_unless_deletes_work(self, repository: str, tag: str) -> None:
        """A throw-away image is pushed over the tag only when it can then be deleted: with
        deletes disabled (distribution answers every DELETE 405 UNSUPPORTED), the tag would
        be left serving the throw-away image instead of what it named. Asked with a DELETE
        of a digest nothing holds: answered 404 (or 202), deletes are carried out."""
        if repository in self._deletes_work:
            return
        try:
            self.pusher.delete_manifest(repository, _ABSENT_DIGEST)
        except PushError as exc:
            answered = f"HTTP {exc.status}" + (f" {exc.code}" if exc.code else "")
            answered += f"; {exc.note}" if exc.note else ""
            raise PushError(
                f"{self.registry.host}: cannot delete tag {repository}:{tag}: the registry "
                f"refuses deletes (DELETE answered {answered}); the tag was left as it was",
                status=exc.status,
                code=exc.code,
            ) from None
        self._deletes_work.add(repository)

    def _push_throwaway(self, repository: str, tag: str) -> str:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        image_config = json.dumps(
            {
                "created": now,
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {DELETE_TAG_LABEL: tag, "delete-date": now}},
                "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(EMPTY_JSON))]},
            },
            separators=(",", ":"),
        ).encode()
        for blob in (image_config, EMPTY_JSON):
            self.pusher.upload_blob(repository, Digest.of(blob), len(blob), io.BytesIO(blob))
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {
                    "mediaType": mt.OCI_CONFIG,
                    "digest": str(Digest.of(image_config)),
                    "size": len(image_config),
                },
                "layers": [
                    {
                        "mediaType": mt.OCI_LAYER,
                        "digest": str(Digest.of(EMPTY_JSON)),
                        "size": len(EMPTY_JSON),
                    }
                ],
            },
            separators=(",", ":"),
        ).encode()
        self.pusher.put_manifest(repository, tag, mt.OCI_MANIFEST, raw)
        return str(Digest.of(raw))
