"""Writing to a registry: blob uploads (monolithic or chunked), cross-repository mounts and
manifest PUTs, over the client's wire and auth (`HttpRegistry.open_request`).

The rules come from the OCI distribution-spec ("Pushing blobs", "Mounting a blob from
another repository", "Pushing manifests") as distribution 2.8 and 3.x implement them:

- An upload starts with `POST /v2/<name>/blobs/uploads/` and continues at the `Location`
  the registry answers (absolute or relative, with opaque state in its query). A monolithic
  upload is one `PUT <location>?digest=<d>` carrying the bytes; a chunked one is `PATCH`es
  with `Content-Range: <first>-<last>` and a closing `PUT ?digest=` without a body.
- `POST ...?mount=<d>&from=<repo>` answers 201 when the registry linked the blob from the
  other repository, and 202 with an ordinary upload session when it did not.
- The registry hashes what it receives and refuses a digest that does not match
  (400 `DIGEST_INVALID`), so a successful PUT means the bytes arrived whole.
- A manifest PUT is refused (400 `MANIFEST_BLOB_UNKNOWN`) when a blob or child manifest it
  references is not in the repository: children must go first.

Nothing here retries a write: a failed upload session is abandoned (the registry purges it)
and the caller decides whether to start again. Memory is bounded by the chunk size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO
from urllib.parse import urlencode

from shipsure.errors import InvalidDigestError
from shipsure.model import Digest, is_repository_name, is_tag
from shipsure.registry.http import HttpRegistry, error_code
from shipsure.registry.interface import ProtocolError, RegistryError, UnavailableError
from shipsure.registry.wire import (
    CHUNK,
    InvalidURL,
    Response,
    WireError,
    capped,
    iter_raw,
    join_url,
)

# Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size, so memory
# stays bounded whatever the layer's size.
CHUNK_SIZE = 8 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024


class PushError(RegistryError):
    """The registry refused or failed a write; `status`/`code` say what it answered, and
    `note` what that most likely means (read-only mode, deletes disabled), when known."""

    note = ""


class Pusher:
    """Writes to one registry through its client. Thread-safe as the client is."""

    def __init__(self, registry: HttpRegistry, *, chunk_size: int = CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.registry = registry
        self.chunk_size = chunk_size

    # -- blobs ----------------------------------------------------------------------------

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        """Link `digest` from `from_repository` into `repository` without moving bytes.
        True when mounted (201); False when the registry declined (the session it opened
        instead is cancelled)."""
        query = urlencode({"mount": str(digest), "from": _name(from_repository)})
        response = self._send("POST", f"/v2/{_name(repository)}/blobs/uploads/?{query}", [])
        with _closing(response):
            if response.status == 201:
                return True
            what = f"mount of {digest} into {repository}"
            if response.status != 202:
                self._raise(response, what)
            location = self._location(response, what)
        with contextlib.suppress(RegistryError):
            self._cancel(location)
        return False

    def upload_blob(self, repository: str, digest: Digest, size: int, content: IO[bytes]) -> None:
        """Upload `size` bytes read from `content` (positioned at their start) as `digest`:
        one PUT up to the chunk size, PATCH chunks beyond it."""
        what = f"upload of {digest} to {repository}"
        response = self._send("POST", f"/v2/{_name(repository)}/blobs/uploads/", [])
        with _closing(response):
            if response.status not in (201, 202):
                self._raise(response, what)
            location = self._location(response, what)
        if size <= self.chunk_size:
            body = _read_exactly(content, size, what)
            self._finish(location, digest, body, what)
            return
        sent = 0
        while sent < size:
            piece = _read_exactly(content, min(self.chunk_size, size - sent), what)
            headers = [
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", f"{sent}-{sent + len(piece) - 1}"),
            ]
            response = self._send("PATCH", location, headers, piece)
            with _closing(response):
                if response.status != 202:
                    self._raise(response, what)
                location = self._location(response, what)
            sent += len(piece)
        self._finish(location, digest, b"", what)

    def _finish(self, location: str, digest: Digest, body: bytes, what: str) -> None:
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}{urlencode({'digest': str(digest)})}"
        # The wire adds Content-Length for every body (0 for the closing PUT of a chunked
        # upload, as the spec asks).
        headers = [("Content-Type", "application/octet-stream")]
        response = self._send("PUT", url, headers, body)
        with _closing(response):
            if response.status != 201:
                self._raise(response, what)
            answered = response.headers.get("docker-content-digest")
            if answered and answered != str(digest):
                raise PushError(
                    f"{self.registry.host}: {what}: registry stored {answered}", status=201
                )

    def _cancel(self, location: str) -> None:
        response = self._send("DELETE", location, [])
        with _closing(response):
            return

    # -- manifests ------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, media_type: str, raw: bytes) -> None:
        """PUT `raw` exactly as given under a tag or its digest. The registry's
        `Docker-Content-Digest` must be the digest of `raw`."""
        if not (is_tag(reference) or _is_digest(reference)):
            raise PushError(f"invalid tag or digest {reference[:160]!r}")
        what = f"manifest {repository}:{reference}" if ":" not in reference else None
        what = what or f"manifest {repository}@{reference}"
        headers = [("Content-Type", media_type)]
        path = f"/v2/{_name(repository)}/manifests/{reference}"
        response = self._send("PUT", path, headers, raw)
        with _closing(response):
            if response.status != 201:
                self._raise(response, f"PUT {what}")
            answered = response.headers.get("docker-content-digest")
            expected = str(Digest.of(raw))
            if answered and answered.startswith("sha256:") and answered != expected:
                raise PushError(
                    f"{self.registry.host}: PUT {what}: registry stored {answered}, not {expected}",
                    status=201,
                )

    def delete_manifest(self, repository: str, reference: str) -> bool:
        """DELETE a manifest by digest (distribution drops every tag naming it too), or only
        a tag where the registry allows that (distribution 3, OCI distribution-spec 1.1).
        True when deleted, False when it was not there (404); a refusal raises `PushError`
        saying what it most likely means."""
        if not (is_tag(reference) or _is_digest(reference)):
            raise PushError(f"invalid tag or digest {reference[:160]!r}")
        separator = "@" if ":" in reference else ":"
        what = f"DELETE {repository}{separator}{reference}"
        response = self._send("DELETE", f"/v2/{_name(repository)}/manifests/{reference}", [])
        with _closing(response):
            if response.status == 404:
                return False
            if not 200 <= response.status < 300:
                self._raise(response, what)
        return True

    # -- requests -------------------------------------------------------------------------

    def _send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> Response:
        target = url
        if "://" not in url and not url.startswith("/"):
            raise ProtocolError(f"{self.registry.host}: upload location {url[:200]!r}")
        try:
            return self.registry.open_request(method, target, headers, body)
        except WireError as exc:
            raise UnavailableError(
                f"{self.registry.host}: {method} {_path(target)}: {exc or type(exc).__name__}"
            ) from None

    def _location(self, response: Response, what: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise ProtocolError(f"{self.registry.host}: {what}: answer without a Location")
        try:
            return join_url(response.url, location)
        except InvalidURL:
            raise ProtocolError(f"{self.registry.host}: {what}: invalid Location") from None

    def _raise(self, response: Response, what: str) -> None:
        code = error_code(_read_error(response))
        status = response.status
        allowed = response.headers.get("allow")
        note = ""
        if status == 405 and allowed is not None and response.method not in allowed.upper():
            # distribution in read-only mode (storage.maintenance.readonly) answers so.
            note = f"the registry allows only {allowed}: is it in read-only mode?"
        elif status == 405 and response.method == "DELETE":
            # ... and so (405 UNSUPPORTED) to every DELETE when deletes are disabled.
            note = "is storage.delete.enabled set?"
        error = self.registry.refused(what, status, code, PushError, note)
        if isinstance(error, PushError):
            error.note = note
        raise error


def _name(repository: str) -> str:
    # Checked before a name goes into a URL path (model.py holds the one grammar).
    if not is_repository_name(repository):
        raise PushError(f"invalid repository name {repository[:160]!r}")
    return repository


def _is_digest(text: str) -> bool:
    try:
        Digest.parse(text)
    except InvalidDigestError:
        return False
    return True


def _read_exactly(content: IO[bytes], size: int, what: str) -> bytes:
    data = content.read(size)
    if len(data) != size:
        raise PushError(f"{what}: content ended after {len(data)} of {size} bytes")
    return data


def _read_error(response: Response) -> bytes:
    """What arrived of an error body, as sent, up to MAX_ERROR_BODY bytes."""
    if response.method == "HEAD":
        return b""
    body, _ = capped(_until_cut(iter_raw(response)), MAX_ERROR_BODY)
    return body[:MAX_ERROR_BODY]


def _until_cut(chunks: Iterator[bytes]) -> Iterator[bytes]:
    with contextlib.suppress(WireError):
        yield from chunks


@contextlib.contextmanager
def _closing(response: Response) -> Iterator[Response]:
    """Read what is left of a small answer (so the connection can be reused), then close."""
    try:
        yield response
    finally:
        with contextlib.suppress(WireError):
            for _ in zip(range(MAX_ERROR_BODY // CHUNK + 1), iter_raw(response), strict=False):
                pass
        response.close()


def _path(url: str) -> str:
    return url.split("?", 1)[0].split("://", 1)[-1].partition("/")[2]


__all__ = ["CHUNK_SIZE", "PushError", "Pusher"]
