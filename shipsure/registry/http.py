"""`Registry` over the distribution HTTP API (OCI distribution-spec), over `wire.py`.

One wire per registry with a keep-alive pool sized to the concurrency limit; every request
passes one semaphore shared by all threads, bounded retries for idempotent reads, and
timeouts. Redirects are followed here rather than below, so that a redirect body is never
read unbounded, loops are told apart from long chains, and credentials never follow a
redirect to another host (blob storage such as S3 signs its own URLs).

Bodies are streamed and capped: manifests at 4 MiB, listings and error bodies smaller, blobs
at the caller's limit. A HEAD never reads a body.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

from shipsure import mediatypes as mt
from shipsure.errors import InvalidReferenceError, ManifestError, UsageError
from shipsure.model import (
    Descriptor,
    Digest,
    ImageIndex,
    is_manifest_reference,
    is_repository_name,
    parse_manifest,
)
from shipsure.registry.auth import RegistryAuth
from shipsure.registry.interface import (
    AuthError,
    BlobRead,
    HeadResult,
    ManifestResponse,
    NotFoundError,
    ProtocolError,
    RegistryError,
    UnavailableError,
)
from shipsure.registry.retry import (
    RETRY_STATUSES,
    RetryPolicy,
    TransientError,
    parse_retry_after,
)
from shipsure.registry.wire import (
    CHUNK,
    ConnectFailed,
    Disconnected,
    InvalidURL,
    Malformed,
    NetworkFailed,
    Request,
    Response,
    Timeouts,
    Wire,
    WireError,
    WireTimeout,
    host_of,
    iter_decoded,
    join_url,
    origin_of,
    path_of,
    read_capped,
    scheme_of,
    target_of,
)

T = TypeVar("T")

MAX_REDIRECTS = 10
MAX_ERROR_BODY = 64 * 1024
MAX_LISTING_BODY = 16 * 1024 * 1024  # one catalog or tags page
MAX_PAGES = 100_000  # a registry that keeps sending "next" forever is hostile
MAX_CATALOG_PAGE = 1000  # distribution: n > 1000 is 400 PAGINATION_NUMBER_INVALID
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_LINK_NEXT_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]*)*)")

# Go's net/http answers plain HTTP sent to its TLS port with this (status 400).
HTTPS_ONLY_ANSWER = b"Client sent an HTTP request to an HTTPS server"


class _Replayed:
    """An answer whose (small) body was read to look at it, handed on as if unread."""

    def __init__(self, original: Response, body: bytes) -> None:
        self._original = original
        self._body = body
        self.status = original.status
        self.headers = original.headers
        self.url = original.url
        self.method = original.method

    def read_chunk(self, limit: int = CHUNK) -> bytes:
        piece, self._body = self._body[:limit], self._body[limit:]
        return piece

    def close(self) -> None:
        self._original.close()


# Failures below the seam that a second attempt may cure; a malformed answer is not one.
_TRANSIENT = (WireTimeout, ConnectFailed, NetworkFailed, Disconnected, TransientError)


class HttpRegistry:
    """A `Registry` for one host. Thread-safe; close it (or use `with`) when done."""

    def __init__(
        self,
        host: str,
        base_url: str,
        wire: Wire,
        auth: RegistryAuth,
        *,
        headers: list[tuple[str, str]],
        timeouts: Timeouts,
        concurrency: int,
        retry: RetryPolicy,
        scheme_fallback: bool = False,
        https_upgrade: bool = False,
    ) -> None:
        self._host = host
        self._base = base_url.rstrip("/")
        self._wire = wire
        self._auth = auth
        self._default_headers = headers
        self._timeouts = timeouts
        self._slots = threading.BoundedSemaphore(concurrency)
        self._retry = retry
        self._scheme_fallback = scheme_fallback
        self._https_upgrade = https_upgrade
        self._scheme_lock = threading.Lock()
        # Built once and shared by every request (registry-facts §5: the client's CPU is
        # taken from the registry it probes).
        self._headers_manifest = self._headers(mt.MANIFEST_ACCEPT)
        self._headers_index = self._headers(mt.OCI_INDEX)
        self._headers_json = self._headers("application/json")
        self._headers_none = self._headers(None)

    def _headers(self, accept: str | None) -> list[tuple[str, str]]:
        extra = [("Accept", accept)] if accept is not None else []
        return [*self._default_headers, *extra]

    # -- Registry protocol ----------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def base_url(self) -> str:
        return self._base

    def ping(self) -> None:
        def check(response: Response) -> None:
            if response.status == 404:
                raise UnavailableError(
                    f"{self._host} does not serve the registry API (GET /v2/ answered 404)",
                    status=404,
                )
            self._raise_for_status(response, "GET /v2/")
            self._drain(response)

        self._call("GET", "/v2/", self._headers_json, check)

    def get_manifest(self, repository: str, reference: str) -> ManifestResponse:
        path = f"/v2/{_repo(repository)}/manifests/{_ref(reference)}"
        what = f"manifest {repository}:{reference}" if ":" not in reference else None
        what = what or f"manifest {repository}@{reference}"

        def read(response: Response) -> ManifestResponse:
            self._raise_for_status(response, what)
            raw = self._read_small(response, mt.MAX_MANIFEST_BYTES, what, exact=True)
            return ManifestResponse(
                raw=raw,
                media_type=_media_type(response),
                digest_header=response.headers.get("docker-content-digest"),
            )

        return self._call("GET", path, self._headers_manifest, read)

    def head_manifest(self, repository: str, reference: str) -> HeadResult:
        path = f"/v2/{_repo(repository)}/manifests/{_ref(reference)}"
        return self._head(path, self._headers_manifest, f"manifest {repository}:{reference}")

    def head_blob(self, repository: str, digest: Digest) -> HeadResult:
        path = f"/v2/{_repo(repository)}/blobs/{digest}"
        return self._head(path, self._headers_none, f"blob {repository}@{digest}")

    def read_blob(self, repository: str, digest: Digest, limit: int) -> BlobRead:
        """Stream and hash; a body that ends early (the registry closed the connection
        before its Content-Length, as a stale blob cache does) comes back as a short read:
        `size` below the descriptor's size is the caller's finding, not an error."""
        path = f"/v2/{_repo(repository)}/blobs/{digest}"
        what = f"blob {repository}@{digest}"

        def read(response: Response) -> BlobRead:
            self._raise_for_status(response, what)
            hasher = digest.hasher()
            size = 0
            budget = limit + 1
            # Stopping at what the server actually sent: a body cut short is the caller's
            # finding (a short read), not a reason to ask again.
            with contextlib.suppress(Disconnected):
                for chunk in iter_decoded(response):
                    if size + len(chunk) > budget:
                        chunk = chunk[: budget - size]
                    hasher.update(chunk)
                    size += len(chunk)
                    if size >= budget:
                        break
            encoded = response.headers.get("content-encoding") not in (None, "identity")
            return BlobRead(
                size=size,
                digest=Digest(digest.algorithm, hasher.hexdigest()),
                overflow=size > limit,
                length=None if encoded else _content_length(response, f"{self._host}: {what}"),
            )

        return self._call("GET", path, self._headers_none, read)

    def get_blob(self, repository: str, digest: Digest, limit: int) -> bytes | None:
        """A small blob's bytes (an image config), checked against `digest`; None when it is
        larger than `limit` (the caller does without it)."""
        path = f"/v2/{_repo(repository)}/blobs/{digest}"
        what = f"blob {repository}@{digest}"

        def read(response: Response) -> bytes | None:
            self._raise_for_status(response, what)
            declared = _content_length(response, f"{self._host}: {what}")
            if declared is not None and declared > limit:
                return None
            body, overflow = read_capped(response, limit)
            if overflow:
                return None
            if not digest.matches(body):
                raise ProtocolError(f"{self._host}: {what}: the bytes sent are not its digest's")
            return body

        return self._call("GET", path, self._headers_none, read)

    def catalog(self, page_size: int | None = MAX_CATALOG_PAGE) -> Iterator[str]:
        if page_size is not None and not 1 <= page_size <= MAX_CATALOG_PAGE:
            raise UsageError(f"catalog page size {page_size}: must be 1..{MAX_CATALOG_PAGE}")
        first = "/v2/_catalog" if page_size is None else f"/v2/_catalog?n={page_size}"
        for doc in self._pages(first, "catalog"):
            names = doc.get("repositories")
            yield from _strings(names, "repositories", f"{self._host} catalog")

    def tags(self, repository: str) -> Iterator[str]:
        what = f"tags of {repository}"
        for doc in self._pages(f"/v2/{_repo(repository)}/tags/list", what):
            yield from _strings(doc.get("tags"), "tags", f"{self._host} {what}")

    def referrers(
        self, repository: str, digest: Digest, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        path = f"/v2/{_repo(repository)}/referrers/{digest}"
        what = f"referrers of {repository}@{digest}"
        if artifact_type:
            path += "?" + urlencode({"artifactType": artifact_type})

        def read(response: Response) -> list[Descriptor] | None:
            if response.status == 404:
                # OCI distribution-spec: "If a query returns a 404, the client MUST fall
                # back to the tag schema." distribution 2.8 answers a plain-text 404.
                body, _ = read_capped(response, MAX_ERROR_BODY)
                return _index_entries(body, None)
            self._raise_for_status(response, what)
            body = self._read_small(response, mt.MAX_MANIFEST_BYTES, what)
            entries = _index_entries(body, _media_type(response))
            if entries is None:
                raise ProtocolError(f"{self._host}: {what}: answer is not an OCI image index")
            return entries

        found = self._call("GET", path, self._headers_index, read)
        if found is None:
            found = self._referrers_tag(repository, digest)
        if found is None or artifact_type is None:
            return found
        # Filter here too: the API may ignore artifactType, and the tag schema cannot filter.
        return [d for d in found if d.artifact_type == artifact_type]

    def open_request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        *,
        follow_redirects: bool = False,
    ) -> Response:
        """Hook for writers and streaming readers (`registry/push.py`, recovery sources):
        one request through the auth flow with the client's default headers, inside the
        concurrency limit, without retries. `url` is absolute or a path under the base URL.
        `follow_redirects` (bodiless requests only) follows as every read does. The caller
        reads and closes the answer; wire errors (`wire.WireError`) are the caller's to map."""
        target = url if "://" in url else self._resolved_base() + url
        sent = [*self._default_headers, *headers]
        with self._slots:
            if follow_redirects and body is None:
                return self._send_following_redirects(method, target, sent)
            return self._send(Request(method, target, sent, body))

    def close(self) -> None:
        self._wire.close()

    def __enter__(self) -> HttpRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpRegistry({self._host!r}, {self._base!r})"

    # -- requests -------------------------------------------------------------------------

    def _referrers_tag(self, repository: str, digest: Digest) -> list[Descriptor] | None:
        # OCI distribution-spec "Referrers Tag Schema": <alg>-<ref>, ref cut to 64 chars.
        tag = f"{digest.algorithm}-{digest.hex[:64]}"
        try:
            answer = self.get_manifest(repository, tag)
        except NotFoundError:
            return None
        entries = _index_entries(answer.raw, answer.media_type)
        if entries is None:
            raise ProtocolError(
                f"{self._host}: referrers tag {repository}:{tag} is not an image index"
            )
        return entries

    def _head(self, path: str, headers: list[tuple[str, str]], what: str) -> HeadResult:
        def read(response: Response) -> HeadResult:
            # No body to read: the wire knows a HEAD answer has none and pools the
            # connection as soon as it is closed.
            self._raise_for_status(response, what)
            return HeadResult(
                digest=response.headers.get("docker-content-digest"),
                media_type=_media_type(response),
                size=_content_length(response, f"{self._host}: {what}"),
            )

        return self._call("HEAD", path, headers, read)

    def _pages(self, first: str, what: str) -> Iterator[dict[str, Any]]:
        """Each JSON page of a listing, following `Link: <...>; rel="next"`."""
        path: str | None = first
        seen: set[str] = set()
        pages = 0
        while path is not None:
            if path in seen:
                raise ProtocolError(
                    f"{self._host}: {what}: pagination does not end (loops back to {path})"
                )
            seen.add(path)
            pages += 1
            if pages > MAX_PAGES:
                raise ProtocolError(
                    f"{self._host}: {what}: pagination does not end (more than {MAX_PAGES} pages)"
                )

            def read(response: Response) -> tuple[dict[str, Any], str | None]:
                self._raise_for_status(response, what)
                body = self._read_small(response, MAX_LISTING_BODY, what)
                # A web page or a proxy's answer is not a listing: say what it is not.
                not_listing = f"{self._host}: {what}: not a registry's listing"
                try:
                    doc = json.loads(body)
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    raise ProtocolError(f"{not_listing} (not JSON: is this a registry?)") from None
                if not isinstance(doc, dict):
                    raise ProtocolError(f"{not_listing} (not a JSON object)")
                return doc, self._next_link(response, what)

            doc, path = self._call("GET", path, self._headers_json, read)
            yield doc

    def _next_link(self, response: Response, what: str) -> str | None:
        for value in response.headers.get_list("link"):
            for match in _LINK_NEXT_RE.finditer(value):
                params = match.group(2).lower().replace(" ", "")
                if 'rel="next"' not in params and "rel=next" not in params:
                    continue
                try:
                    target = join_url(response.url, match.group(1))
                except InvalidURL:
                    raise ProtocolError(f"{self._host}: {what}: invalid Link URL") from None
                if origin_of(target) != origin_of(self._base):
                    raise ProtocolError(
                        f"{self._host}: {what}: Link points to another host ({host_of(target)})"
                    )
                return target_of(target)
        return None

    def _call(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        consume: Callable[[Response], T],
    ) -> T:
        """Send with bounded retries; `consume` reads the response inside the retry loop
        (a body cut mid-way is retried like a refused connection) and the concurrency slot."""
        base = self._resolved_base()
        url = base + path
        retry = self._retry
        with self._slots:
            attempt = 1
            while True:
                retry_after: float | None = None
                try:
                    response = self._send_following_redirects(method, url, headers)
                    if response.status == 400 and self._https_upgrade:
                        response, upgraded = self._upgrade_to_https(response)
                        if upgraded:
                            url = self._base + path
                            continue
                    try:
                        status = response.status
                        if status in RETRY_STATUSES and attempt < retry.attempts:
                            retry_after = parse_retry_after(response.headers.get("retry-after"))
                        else:
                            return consume(response)
                    finally:
                        response.close()
                except _TRANSIENT as exc:
                    if attempt >= retry.attempts:
                        raise UnavailableError(
                            f"{self._host}: {method} {_path_only(path)}: {_describe(exc)} "
                            f"(after {attempt} attempts)"
                        ) from None
                except Malformed as exc:
                    raise ProtocolError(
                        f"{self._host}: {method} {_path_only(path)}: {exc}"
                    ) from None
                except WireError as exc:  # proxy errors and the like
                    raise UnavailableError(
                        f"{self._host}: {method} {_path_only(path)}: {_describe(exc)}"
                    ) from None
                retry.sleep(retry.delay(attempt, retry_after))
                attempt += 1

    def _send_following_redirects(
        self, method: str, url: str, headers: list[tuple[str, str]]
    ) -> Response:
        seen = {url}
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(Request(method, target, headers))
            if response.status not in _REDIRECT_STATUSES:
                return response
            try:
                location = response.headers.get("location")
                self._drain(response)
            finally:
                response.close()
            where = f"{self._host}: {method} {path_of(target)}"
            if not location:
                raise ProtocolError(f"{where}: redirect without a Location", status=response.status)
            try:
                following = join_url(target, location)
            except InvalidURL:
                raise ProtocolError(f"{where}: redirect to an invalid URL") from None
            if scheme_of(following) not in ("http", "https"):
                raise ProtocolError(f"{where}: redirect to a non-HTTP URL")
            if scheme_of(target) == "https" and scheme_of(following) == "http":
                raise ProtocolError(f"{where}: redirect downgrades HTTPS to HTTP")
            if following in seen:
                raise ProtocolError(f"{self._host}: {method} {path_of(url)}: redirect loop")
            seen.add(following)
            target = following
        raise ProtocolError(
            f"{self._host}: {method} {path_of(url)}: more than {MAX_REDIRECTS} redirects"
        )

    def _send(self, request: Request) -> Response:
        """One hop, through the auth flow: the request, and when it is challenged, the
        token request and the request again. Only the last answer is left open."""
        flow = self._auth.flow(request)
        try:
            outgoing = next(flow)
            while True:
                response = self._wire.send(outgoing, self._timeouts)
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return response
                except BaseException:
                    response.close()
                    raise
                response.close()
        finally:
            # Releases a token fetch's scope lock when a send failed in the middle of it.
            flow.close()

    def _resolved_base(self) -> str:
        if not self._scheme_fallback:
            return self._base
        with self._scheme_lock:
            if self._scheme_fallback:
                self._base = self._probe_scheme()
                self._scheme_fallback = False
        return self._base

    def _upgrade_to_https(self, response: Response) -> tuple[Response, bool]:
        """A loopback registry spoken to over plain HTTP that answers with Go's "HTTP
        request to an HTTPS server" 400 serves TLS: move this client to HTTPS (verified
        unless --insecure) and say to ask again. Any other 400 comes back readable."""
        body = b""
        looked_at = response
        with contextlib.suppress(WireError):
            if response.method == "HEAD":  # no body to look at: ask GET /v2/ once
                response.close()
                looked_at = self._wire.send(
                    Request("GET", self._base + "/v2/", self._headers_json), self._timeouts
                )
            while len(body) <= MAX_ERROR_BODY and (chunk := looked_at.read_chunk()):
                body += chunk
        if looked_at is not response:
            looked_at.close()
        if HTTPS_ONLY_ANSWER not in body:
            return _Replayed(response, body if looked_at is response else b""), False
        response.close()
        with self._scheme_lock:  # threads that met the 400 together move it once
            self._https_upgrade = False
            if self._base.startswith("http://"):
                self._base = "https://" + self._base.removeprefix("http://")
        return response, True

    def _probe_scheme(self) -> str:
        """`--insecure` without a scheme: HTTPS when the host speaks it, else plain HTTP,
        as docker does for its insecure registries."""
        probe = Request("GET", self._base + "/v2/", self._headers_json)
        try:
            response = self._wire.send(probe, self._timeouts)
        except ConnectFailed:
            return "http://" + self._base.removeprefix("https://")
        except WireError:
            return self._base
        response.close()
        return self._base

    # -- bodies and statuses --------------------------------------------------------------

    def _raise_for_status(self, response: Response, what: str) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        code = None
        if response.method != "HEAD":
            body, _ = read_capped(response, MAX_ERROR_BODY)
            code = error_code(body)
        raise self.refused(what, status, code)

    def refused(
        self,
        what: str,
        status: int,
        code: str | None,
        other: type[RegistryError] = ProtocolError,
        note: str = "",
    ) -> RegistryError:
        """`status_error` for this registry, reads and writes alike: a 401 also says which
        credentials were tried (never the secret): none (and where they come from), or
        which source's were refused."""
        if status == 401 and not note:
            note = self._auth.refusal()
        return status_error(self._host, what, status, code, other, note=note)

    def _read_small(self, response: Response, cap: int, what: str, *, exact: bool = False) -> bytes:
        declared = _content_length(response, f"{self._host}: {what}")
        if declared is not None and declared > cap:
            raise ProtocolError(
                f"{self._host}: {what}: answer of {declared} bytes is over the {cap} byte limit"
            )
        body, overflow = read_capped(response, cap)
        if overflow:
            raise ProtocolError(f"{self._host}: {what}: answer is over the {cap} byte limit")
        # Content-Length counts the bytes as sent; an encoded body is checked by its decoder.
        encoded = response.headers.get("content-encoding") not in (None, "identity")
        if exact and declared is not None and not encoded and len(body) != declared:
            raise ProtocolError(
                f"{self._host}: {what}: body is {len(body)} bytes, Content-Length said {declared}"
            )
        return body

    def _drain(self, response: Response) -> None:
        """Read a small body to the end so the connection can be reused; give up on a big one."""
        with contextlib.suppress(WireError):
            read_capped(response, MAX_ERROR_BODY)


# -- helpers ------------------------------------------------------------------------------


# Names are checked before they go into a URL path, so "../x" or "a?b" cannot retarget a
# request, and a non-ASCII name is refused before any traffic. The grammar is the model's
# (distribution's reference/regexp.go): a registry cannot hold other names.


def _repo(repository: str) -> str:
    if not is_repository_name(repository):
        raise InvalidReferenceError(f"invalid repository name {repository[:160]!r}")
    return repository


def _ref(reference: str) -> str:
    if not is_manifest_reference(reference):
        raise InvalidReferenceError(f"invalid tag or digest {reference[:160]!r}")
    return reference


def _media_type(response: Response) -> str | None:
    value = response.headers.get("content-type")
    if not value:
        return None
    return value.split(";", 1)[0].strip() or None


def _content_length(response: Response, where: str) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    # RFC 9110: Content-Length = 1*DIGIT; a list of equal values is tolerated by h11 only.
    if not value.isascii() or not value.isdigit():
        raise ProtocolError(f"{where}: invalid Content-Length {value[:40]!r}")
    return int(value)


def status_error(
    host: str,
    what: str,
    status: int,
    code: str | None,
    other: type[RegistryError] = ProtocolError,
    *,
    note: str = "",
) -> RegistryError:
    """The error for an answer of `status` (not 2xx) with the registry error `code`: the
    registry says it is not there (404), refused us (401, 403) or could not answer (429,
    5xx); anything else is `other` (a reader's unusable answer, a writer's refusal).
    `note`, when given, follows in parentheses (what the caller knows of the cause)."""
    detail = f"{host}: {what}: HTTP {status}" + (f" {code}" if code else "")
    if note:
        detail += f" ({note})"
    if status == 404:
        return NotFoundError(detail, status=status, code=code)
    if status in (401, 403):
        return AuthError(detail, status=status, code=code)
    if status == 429 or status >= 500:
        return UnavailableError(detail, status=status, code=code)
    return other(detail, status=status, code=code)


def error_code(body: bytes) -> str | None:
    """`{"errors":[{"code":"MANIFEST_UNKNOWN",...}]}`; None for a plain-text router 404."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        if isinstance(code, str) and code.isascii() and len(code) <= 64:
            return code
    return None


def _index_entries(body: bytes, media_type: str | None) -> list[Descriptor] | None:
    """The descriptors of an OCI image index, or None when `body` is not one."""
    try:
        parsed = parse_manifest(body, media_type)
    except ManifestError:
        return None
    if not isinstance(parsed, ImageIndex):
        return None
    return list(parsed.manifests)


def _strings(value: object, field: str, where: str) -> Iterator[str]:
    if value is None:
        return  # distribution sends "tags": null for a repository whose tags are all gone
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"{where}: {field!r} is not a list of strings")
    yield from value


def _describe(exc: Exception) -> str:
    if isinstance(exc, Disconnected):
        return "connection closed early"
    text = str(exc) or type(exc).__name__
    return f"cannot connect: {text}" if isinstance(exc, ConnectFailed) else text


def _path_only(path: str) -> str:
    return path.split("?", 1)[0]


__all__ = ["HttpRegistry", "RegistryError"]
