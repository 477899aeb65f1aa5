"""Another registry as a content source: a second registry, a mirror, the upstream.

`--from host[:port]` reads the same repository names; `--from host[:port]/prefix` reads
`prefix/<repository>`. Reads go through the registry client (auth, TLS, retries on
manifests and HEADs); blob bodies stream through its writers' hook and are retried here a
bounded number of times, from the start, when the connection drops.
"""

from __future__ import annotations

import contextlib
import threading

from shipsure.errors import InvalidDigestError
from shipsure.model import Digest
from shipsure.recovery.interface import Sink, SourceError, SourceManifest
from shipsure.registry.http import HttpRegistry
from shipsure.registry.interface import (
    NotFoundError,
    ProtocolError,
    RegistryError,
    UnavailableError,
)
from shipsure.registry.wire import Disconnected, WireError, iter_decoded

BLOB_ATTEMPTS = 3  # connection failures before the answer began


class RegistrySource:
    def __init__(self, registry: HttpRegistry, prefix: str = "") -> None:
        self.registry = registry
        self.prefix = prefix.strip("/")
        self._api_lock = threading.Lock()
        self._api_answer: list[str | None] = []  # asked once: why /v2/ fails, or None

    def _absent(self) -> None:
        """Before a 404 counts as "this source has no copy": the host serves the registry
        API. A web server on the port answers 404 to everything, and restore would call
        the content lost (a rebuild plan) while its copy sits in the real registry."""
        with self._api_lock:
            if not self._api_answer:
                answer: str | None = None
                try:
                    self.registry.ping()
                except (UnavailableError, ProtocolError) as exc:
                    answer = str(exc)
                except RegistryError:
                    pass  # it answers as a registry does, if not to us: the 404 stands
                self._api_answer.append(answer)
            refused = self._api_answer[0]
        if refused is not None:
            raise SourceError(f"{self.name}: {refused}")

    @property
    def name(self) -> str:
        where = self.registry.host + (f"/{self.prefix}" if self.prefix else "")
        return f"registry {where}"

    @property
    def preserves_manifests(self) -> bool:
        return True

    def _repo(self, repository: str) -> str:
        return f"{self.prefix}/{repository}" if self.prefix else repository

    def resolve_tag(self, repository: str, tag: str) -> Digest | None:
        try:
            head = self.registry.head_manifest(self._repo(repository), tag)
        except NotFoundError:
            self._absent()
            return None
        except RegistryError as exc:
            raise SourceError(f"{self.name}: {exc}") from None
        if head.digest is not None:
            with contextlib.suppress(InvalidDigestError):
                return Digest.parse(head.digest)
        # No Docker-Content-Digest: hash the body, as a pull by tag would.
        found = self._get_manifest(repository, tag)
        return None if found is None else Digest.of(found.raw)

    def manifest(self, repository: str, digest: Digest) -> SourceManifest | None:
        return self._get_manifest(repository, str(digest))

    def _get_manifest(self, repository: str, reference: str) -> SourceManifest | None:
        try:
            answer = self.registry.get_manifest(self._repo(repository), reference)
        except NotFoundError:
            self._absent()
            return None
        except RegistryError as exc:
            raise SourceError(f"{self.name}: {exc}") from None
        return SourceManifest(answer.raw, answer.media_type)

    def has_blob(self, repository: str, digest: Digest) -> bool:
        try:
            self.registry.head_blob(self._repo(repository), digest)
        except NotFoundError:
            self._absent()
            return False
        except RegistryError as exc:
            raise SourceError(f"{self.name}: {exc}") from None
        return True

    def copy_blob(self, repository: str, digest: Digest, limit: int, sink: Sink) -> bool:
        """A body cut short is handed over as far as it came: the caller's verification
        rejects it (a stale blob cache in the source shows this way)."""
        path = f"/v2/{self._repo(repository)}/blobs/{digest}"
        last = ""
        for _ in range(BLOB_ATTEMPTS):
            try:
                response = self.registry.open_request("GET", path, [], follow_redirects=True)
            except WireError as exc:
                last = str(exc) or type(exc).__name__  # nothing delivered yet: try again
                continue
            try:
                if response.status == 404:
                    self._absent()
                    return False
                if response.status != 200:
                    raise SourceError(f"{self.name}: GET blob {digest}: HTTP {response.status}")
                total = 0
                try:
                    for piece in iter_decoded(response):
                        sink(piece)
                        total += len(piece)
                        if total > limit:
                            break
                except Disconnected:
                    pass
                except WireError as exc:
                    raise SourceError(f"{self.name}: GET blob {digest}: {exc}") from None
                return True
            finally:
                response.close()
        raise SourceError(f"{self.name}: GET blob {digest}: {last} (after {BLOB_ATTEMPTS} tries)")

    def close(self) -> None:
        self.registry.close()
