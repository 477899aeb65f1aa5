"""The registry seam: what checks ask of a registry, the records that cross, its errors.

Checks depend on `Registry` only; `http.py` implements it over the distribution API. Every
method is safe to call from many threads at once: the implementation bounds concurrency
itself, so callers may submit freely to a thread pool.

Errors tell "the registry said it is not there" (`NotFoundError`) apart from "we could not
ask" (`UnavailableError`, `AuthError`) and from "the answer was hostile or malformed"
(`ProtocolError`). Only the first may ever become a "missing" finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from shipsure.errors import CouldNotRunError
from shipsure.model import Descriptor, Digest


@dataclass(frozen=True)
class ManifestResponse:
    """A manifest body exactly as received (at most 4 MiB), with the headers that matter."""

    raw: bytes
    media_type: str | None  # Content-Type without parameters
    digest_header: str | None  # Docker-Content-Digest, as sent (unvalidated)


@dataclass(frozen=True)
class HeadResult:
    """A successful HEAD: what the registry claims about the object."""

    digest: str | None  # Docker-Content-Digest, as sent
    media_type: str | None
    size: int | None  # Content-Length


@dataclass(frozen=True)
class BlobRead:
    """A streamed GET, hashed on the fly; the body itself is never kept in memory."""

    size: int  # bytes read (at most `limit` + 1)
    digest: Digest  # computed over the bytes read, in the algorithm asked for
    overflow: bool  # the server sent more than `limit` bytes; reading stopped there
    length: int | None = None  # the answer's Content-Length (of an unencoded body), as sent


class RegistryError(CouldNotRunError):
    """Base of registry failures. `status` and `code` are what the registry answered."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # registry error code, e.g. MANIFEST_UNKNOWN, BLOB_UNKNOWN


class NotFoundError(RegistryError):
    """The registry answered 404: it says the object is not there."""


class AuthError(RegistryError):
    """401/403 that credentials could not overcome: could not check."""


class UnavailableError(RegistryError):
    """Connection failure, timeout, 429 or 5xx that persisted after bounded retries."""


class ProtocolError(RegistryError):
    """A hostile or malformed answer: redirect loop, oversized manifest, bad headers."""


class Registry(Protocol):
    """One registry host. Repositories are names like `team/app` (no host part)."""

    @property
    def host(self) -> str: ...

    def ping(self) -> None:
        """`GET /v2/`; raises `UnavailableError`/`AuthError` when the registry can't be used."""
        ...

    def get_manifest(self, repository: str, reference: str) -> ManifestResponse:
        """GET a manifest by tag or digest, sending every manifest media type we know."""
        ...

    def head_manifest(self, repository: str, reference: str) -> HeadResult: ...

    def head_blob(self, repository: str, digest: Digest) -> HeadResult: ...

    def read_blob(self, repository: str, digest: Digest, limit: int) -> BlobRead:
        """Stream a blob, hashing with `digest`'s algorithm, reading at most `limit` + 1
        bytes (so an endless body cannot hang or exhaust memory)."""
        ...

    def catalog(self, page_size: int | None = 1000) -> Iterator[str]:
        """Every repository name, following `Link` pagination; `page_size` None sends no
        `n` (for a registry that refuses it) and takes the registry's own page size."""
        ...

    def tags(self, repository: str) -> Iterator[str]:
        """Every tag of a repository, following `Link` pagination when present."""
        ...

    def referrers(
        self, repository: str, digest: Digest, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """Manifests whose `subject` is `digest`, by the referrers API or the
        `sha256-<hex>` tag fallback. None when neither exists (nothing refers to it, or
        the registry cannot tell)."""
        ...

    def close(self) -> None: ...
