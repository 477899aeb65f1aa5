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

Reads and writes go through httpx (TLS verified; loopback hosts over plain HTTP, as docker
does, or HTTPS when that is all they speak). Credentials come from shipsure's usual chain;
Basic and Bearer-token challenges are answered once per request, and credentials go to no
other host over plain HTTP. Every answer is read to a cap for its kind within the timeout,
and a manifest's digest is always its bytes' own: what this module deletes by.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from shipsure import mediatypes as mt
from shipsure.errors import CouldNotRunError
from shipsure.gc.reach import manifest_node
from shipsure.plan import Action, AlreadyDone, Precondition, Ready, Refused
from shipsure.registry import is_loopback, resolve_endpoint, tls_context
from shipsure.registry.credentials import NO_CREDENTIALS_HINT, Credentials
from shipsure.registry.http import HTTPS_ONLY_ANSWER, MAX_PAGES
from shipsure.registry.httpx_wire import wire_error
from shipsure.retention.plan import DELETE_MANIFEST, DELETE_TAG, TagImage
from shipsure.retention.storage import parse_created

CONFIG_READ_LIMIT = 1 << 20
TOKEN_LIMIT = 1 << 20
# A tags list of 100,000 long tags fits; an endless body does not.
LISTING_LIMIT = 64 << 20
DELETE_TAG_LABEL = "delete-tag"
EMPTY_JSON = b"{}"
# A digest no registry holds (of these words): DELETE of it tells whether deletes work.
_ABSENT_DIGEST = "sha256:" + hashlib.sha256(b"shipsure: is DELETE carried out here?").hexdigest()
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class RegistryWriteError(CouldNotRunError):
    """The registry refused or failed a request retention needed."""


class AnswerTooLarge(RegistryWriteError):
    """An answer's body went past what its kind may hold."""


class RegistryClient:
    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        ca_file: str | None = None,
        credentials: Callable[[], Credentials | None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        endpoint = resolve_endpoint(host, insecure=insecure)
        self.host = endpoint.host
        self.base = endpoint.base_url
        self._https_upgrade = endpoint.https_upgrade
        self._credentials = credentials
        self._insecure = insecure
        self._token: str | None = None
        self._timeout = timeout
        self._client = httpx.Client(
            verify=tls_context(insecure, ca_file), timeout=timeout, follow_redirects=True
        )

    def close(self) -> None:
        self._client.close()

    # --- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        limit: int = LISTING_LIMIT,
    ) -> httpx.Response:
        if self._https_upgrade and not path.startswith("http"):
            self._upgrade_if_tls_only()
        url = path if path.startswith("http") else self.base + path
        sent = dict(headers or {})
        if self._token:
            sent["Authorization"] = self._token
        try:
            request = self._client.build_request(method, url, headers=sent, content=content)
            response = self._read(request, limit)
            if response.status_code == 401 and self._answer(response):
                sent["Authorization"] = self._token or ""
                request = self._client.build_request(method, url, headers=sent, content=content)
                response = self._read(request, limit)
        except httpx.TransportError as exc:
            # The registry client's wording: an untrusted certificate says what to do.
            reason = wire_error(exc)
            raise RegistryWriteError(f"{self.host}: {method} {path}: {reason}") from None
        except httpx.HTTPError as exc:
            raise RegistryWriteError(f"{self.host}: {method} {path}: {exc}") from None
        return response

    def _read(
        self, request: httpx.Request, limit: int, auth: httpx.Auth | None = None
    ) -> httpx.Response:
        """Send, and read the answer's body to at most `limit` bytes within the timeout
        (plus a second per MiB received), as the registry client does: an endless or
        dripping body is an error, never a hang or memory without bound."""
        started = time.monotonic()
        response = self._client.send(request, auth=auth, stream=True)
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise AnswerTooLarge(
                        f"{self.host}: {request.method} {request.url.path}: answer over "
                        f"{limit} bytes"
                    )
                if time.monotonic() - started > self._timeout + len(body) / (1 << 20):
                    raise RegistryWriteError(
                        f"{self.host}: {request.method} {request.url.path}: the answer took "
                        f"longer than {self._timeout:g} s"
                    )
        finally:
            response.close()
        # The body as read (decoded): the headers that described its encoding go.
        kept = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code, headers=kept, content=bytes(body), request=response.request
        )

    def _upgrade_if_tls_only(self) -> None:
        """A loopback registry is spoken to over plain HTTP; one that answers it speaks only
        HTTPS (Go's "HTTP request to an HTTPS server") is spoken to over HTTPS, as the
        registry client does (verified unless --insecure). Asked once, with GET /v2/."""
        self._https_upgrade = False
        try:
            probe = self._read(self._client.build_request("GET", self.base + "/v2/"), TOKEN_LIMIT)
        except (httpx.HTTPError, RegistryWriteError):
            return  # the request itself will say what is wrong
        if probe.status_code == 400 and HTTPS_ONLY_ANSWER in probe.content:
            self.base = "https://" + self.base.removeprefix("http://")

    def _answer(self, response: httpx.Response) -> bool:
        challenge = response.headers.get("www-authenticate", "")
        creds = self._credentials() if self._credentials else None
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic" and creds and creds.username and creds.password:
            pair = f"{creds.username}:{creds.password}".encode()
            self._token = "Basic " + base64.b64encode(pair).decode()
            return True
        if scheme == "bearer":
            params = dict(_CHALLENGE_RE.findall(challenge))
            realm = params.pop("realm", "")
            try:
                realm_url = httpx.URL(realm)
            except httpx.InvalidURL:
                return False
            if realm_url.scheme not in ("http", "https") or not realm_url.host:
                return False
            if (
                creds is not None
                and realm_url.scheme == "http"
                and not (self._insecure or is_loopback(realm_url.host))
            ):
                # As the registry client: plain HTTP allowed for a loopback registry is not
                # allowed for the host its challenge names (the password would cross).
                raise RegistryWriteError(
                    f"{self.host}: the registry asks for credentials over plain HTTP (token "
                    f"realm {realm_url.host}); refusing without --insecure"
                )
            auth = (
                httpx.BasicAuth(creds.username, creds.password)
                if creds and creds.username and creds.password
                else None
            )
            try:
                got = self._read(
                    self._client.build_request("GET", realm, params=params), TOKEN_LIMIT, auth
                )
                body = got.json()
            except (httpx.HTTPError, ValueError):
                return False
            token = (
                body.get("token") or body.get("access_token") if isinstance(body, dict) else None
            )
            if isinstance(token, str) and token:
                self._token = f"Bearer {token}"
                return True
        return False

    def _expect(self, response: httpx.Response, what: str, *ok: int) -> httpx.Response:
        if response.status_code in ok:
            return response
        raise RegistryWriteError(f"{self.host}: {what}: {self._explain(response)}")

    def _explain(self, response: httpx.Response) -> str:
        """One line: the status, the registry's error code, and for 401 whose credentials
        were refused. Never the body itself: a proxy's HTML page is no message."""
        status = response.status_code
        code = _error_code(response.content)
        text = f"HTTP {status}" + (f" {code}" if code else "")
        if status == 401:
            creds = self._credentials() if self._credentials else None
            if creds is None:
                text += f" (no credentials for {self.host}: {NO_CREDENTIALS_HINT})"
            else:
                text += f" (credentials from {creds.source} refused)"
        elif code is None and status == 404:
            text += " (not a registry API answer: is this a registry?)"
        return text

    # --- reads ----------------------------------------------------------------------------

    def _pages(self, path: str, key: str, first: httpx.Response | None = None) -> Iterator[str]:
        url: str | None = path
        seen: set[str] = set()
        while url:
            # A registry whose "next" page loops back, or never ends, is hostile: stop.
            if url in seen or len(seen) >= MAX_PAGES:
                raise RegistryWriteError(f"{self.host}: GET {path}: pagination does not end")
            seen.add(url)
            got = first if first is not None else self.request("GET", url)
            first = None
            r = self._expect(got, f"GET {url}", 200)
            yield from self._listing(r, url, key)
            link = r.headers.get("link", "")
            m = re.search(r"<([^>]+)>", link)
            url = m.group(1) if m else None
            # Our credentials go with every request: never to a host the registry names.
            target = httpx.URL(url) if url and url.startswith(("http://", "https://")) else None
            if target is not None and target.netloc != httpx.URL(self.base).netloc:
                raise RegistryWriteError(
                    f"{self.host}: GET {path}: Link points to another host ({target.host})"
                )

    def _listing(self, response: httpx.Response, url: str, key: str) -> list[str]:
        """`{"<key>": [names]}` (null for none, as distribution sends for no tags); any
        other answer (a web page, a proxy's JSON) is not a registry's listing."""
        try:
            doc: Any = json.loads(response.content)
        except (ValueError, RecursionError):
            doc = None
        items = doc.get(key, ...) if isinstance(doc, dict) else ...
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise RegistryWriteError(
                f"{self.host}: GET {url}: not a registry's listing (no {key!r} list of "
                "names: is this a registry?)"
            )
        return items

    def catalog(self) -> list[str]:
        return list(self._pages("/v2/_catalog?n=1000", "repositories"))

    def tags(self, repository: str) -> list[str] | None:
        """The repository's tags; None when the registry answers NAME_UNKNOWN, which
        distribution does for a repository whose tags are all gone (pushed by digest only,
        or every tag deleted) as well as for one it never held."""
        path = f"/v2/{repository}/tags/list"
        first = self.request("GET", path)
        if first.status_code == 404 and _error_code(first.content) == "NAME_UNKNOWN":
            return None
        return list(self._pages(path, "tags", first))

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        r = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": mt.MANIFEST_ACCEPT},
            limit=mt.MAX_MANIFEST_BYTES,
        )
        if r.status_code == 404:
            return None
        self._expect(r, f"GET {repository}:{reference}", 200)
        raw = r.content
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        header = r.headers.get("docker-content-digest")
        if header is not None and header.startswith("sha256:") and header != digest:
            # The digest is what retain deletes by: never one the bytes do not carry.
            raise RegistryWriteError(
                f"{self.host}: GET {repository}:{reference}: Docker-Content-Digest {header} "
                f"disagrees with the bytes sent ({digest})"
            )
        return raw, header or digest

    def head_manifest(self, repository: str, reference: str) -> str | None:
        r = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": mt.MANIFEST_ACCEPT},
        )
        if r.status_code == 404:
            return None
        self._expect(r, f"HEAD {repository}:{reference}", 200)
        got: str | None = r.headers.get("docker-content-digest")
        return got

    def blob(self, repository: str, digest: str) -> bytes | None:
        try:
            r = self.request("GET", f"/v2/{repository}/blobs/{digest}", limit=CONFIG_READ_LIMIT)
        except AnswerTooLarge:
            return None  # no config shipsure reads: its creation time is unknown
        if r.status_code != 200:
            return None
        return r.content

    # --- writes ---------------------------------------------------------------------------

    def put_blob(self, repository: str, data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        r = self._expect(
            self.request("POST", f"/v2/{repository}/blobs/uploads/"),
            f"start upload to {repository}",
            202,
        )
        location = r.headers.get("location", "")
        sep = "&" if "?" in location else "?"
        self._expect(
            self.request(
                "PUT",
                f"{location}{sep}digest={digest}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"upload to {repository}",
            201,
        )
        return digest

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        self._expect(
            self.request(
                "PUT",
                f"/v2/{repository}/manifests/{reference}",
                content=raw,
                headers={"Content-Type": media_type},
            ),
            f"PUT {repository}:{reference}",
            201,
        )
        return f"sha256:{hashlib.sha256(raw).hexdigest()}"

    def delete_manifest(self, repository: str, reference: str) -> httpx.Response:
        return self.request("DELETE", f"/v2/{repository}/manifests/{reference}")


# --- reading tag trees ---------------------------------------------------------------------


def read_images(
    client: RegistryClient, repositories: list[str] | None
) -> tuple[list[TagImage], list[str]]:
    """Every tag's tree, and the named repositories the registry lists no tags for.

    A catalog repository without tags (NAME_UNKNOWN from its tags list) has nothing to
    retain and is passed over; one the user named is returned, so the CLI can say so."""
    repos = repositories if repositories else client.catalog()
    images: list[TagImage] = []
    untagged: list[str] = []
    for repository in repos:
        tags = client.tags(repository)
        if tags is None:
            if repositories:
                untagged.append(repository)
            continue
        for tag in tags:
            got = client.manifest(repository, tag)
            if got is None:
                continue
            images.append(_image(client, repository, tag, *got))
    return images, untagged


def _image(client: RegistryClient, repository: str, tag: str, raw: bytes, digest: str) -> TagImage:
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
            got = client.manifest(repository, child.digest)
            if got is not None:
                pending.append((got[0], child.digest))
        for i, ref in enumerate(node.blobs):
            blobs[ref.digest] = ref.size
            if i == 0 and node.media_type in mt.IMAGE_MANIFESTS:
                config = client.blob(repository, ref.digest)
                if config is None:
                    continue
                leftover |= _is_throwaway(config)
                c = parse_created(config)
                if c is not None and (created is None or c > created):
                    created = c
    if leftover:
        created = 0.0
    return TagImage(
        repository, tag, digest, created, frozenset(manifests), blobs, leftover=leftover
    )


def _delete_refused(answer: httpx.Response) -> str:
    """What a refused DELETE most likely means. distribution answers 405 either way: with
    `Allow: GET, HEAD` in read-only mode, with UNSUPPORTED when deletes are disabled."""
    allowed = answer.headers.get("allow")
    if answer.status_code == 405 and allowed and "DELETE" not in allowed.upper():
        return f"the registry allows only {allowed}: is it in read-only mode?"
    return "is storage.delete.enabled set? else use --on-storage"


def _error_code(body: bytes) -> str | None:
    """The first code of distribution's `{"errors":[{"code":...}]}`; None otherwise."""
    try:
        doc: Any = json.loads(body)
        code = doc["errors"][0]["code"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return None
    return code if isinstance(code, str) and code.isascii() and len(code) <= 64 else None


def _is_throwaway(config: bytes) -> bool:
    try:
        doc: Any = json.loads(config)
        labels = doc.get("config", {}).get("Labels") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(labels, dict) and DELETE_TAG_LABEL in labels


# --- the writer ---------------------------------------------------------------------------


class ApiWriter:
    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._deletes_work: set[str] = set()

    def check(self, action: Action) -> Precondition:
        repository = str(action.facts["repository"])
        digest = str(action.facts["digest"])
        if action.op == DELETE_TAG:
            current = self.client.head_manifest(repository, str(action.facts["tag"]))
            if current is None:
                return AlreadyDone("the tag is gone")
            if current != digest and not self._throwaway(repository, current):
                return Refused(f"the tag moved to {current} since the plan")
            return Ready()
        if action.op == DELETE_MANIFEST:
            for tag in action.facts.get("tags", []):
                current = self.client.head_manifest(repository, str(tag))
                if current is not None and current != digest:
                    return Refused(f"tag {tag} moved to {current} since the plan")
            if self.client.head_manifest(repository, digest) is None:
                return AlreadyDone("the manifest is gone")
            return Ready()
        return Refused(f"unknown operation {action.op}")

    def _throwaway(self, repository: str, digest: str) -> bool:
        got = self.client.manifest(repository, digest)
        if got is None:
            return False
        node = manifest_node(got[0], digest)
        if node is None or not node.blobs:
            return False
        config = self.client.blob(repository, node.blobs[0].digest)
        return config is not None and _is_throwaway(config)

    def run(self, action: Action) -> None:
        repository = str(action.facts["repository"])
        if action.op == DELETE_MANIFEST:
            self._delete_digest(repository, str(action.facts["digest"]))
            return
        tag = str(action.facts["tag"])
        current = self.client.head_manifest(repository, tag)
        if current is not None and current != action.facts["digest"]:
            # A throw-away image an interrupted run left on the tag (check() said so).
            self._delete_digest(repository, current)
            return
        if self.client.delete_manifest(repository, tag).status_code == 202:
            return
        self._refuse_unless_deletes_work(repository, tag)
        throwaway = self._push_throwaway(repository, tag)
        self._delete_digest(repository, throwaway)

    def _refuse_unless_deletes_work(self, repository: str, tag: str) -> None:
        """A throw-away image is pushed over the tag only when it can then be deleted: with
        deletes disabled (distribution answers every DELETE 405 UNSUPPORTED), the tag would
        be left serving the throw-away image instead of what it named. Asked with a DELETE
        of a digest nothing holds: 404 (or 202) means deletes are carried out."""
        if repository in self._deletes_work:
            return
        answer = self.client.delete_manifest(repository, _ABSENT_DIGEST)
        if answer.status_code not in (202, 404):
            raise RegistryWriteError(
                f"{self.client.host}: cannot delete tag {repository}:{tag}: the registry "
                f"refuses deletes (DELETE answered HTTP {answer.status_code}; "
                f"{_delete_refused(answer)}); the tag was left as it was"
            )
        self._deletes_work.add(repository)

    def _delete_digest(self, repository: str, digest: str) -> None:
        answer = self.client.delete_manifest(repository, digest)
        if answer.status_code not in (202, 404):
            raise RegistryWriteError(
                f"{self.client.host}: DELETE {repository}@{digest}: HTTP {answer.status_code} "
                f"({_delete_refused(answer)})"
            )

    def _push_throwaway(self, repository: str, tag: str) -> str:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        config = json.dumps(
            {
                "created": now,
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {DELETE_TAG_LABEL: tag, "delete-date": now}},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [f"sha256:{hashlib.sha256(EMPTY_JSON).hexdigest()}"],
                },
            },
            separators=(",", ":"),
        ).encode()
        config_digest = self.client.put_blob(repository, config)
        layer_digest = self.client.put_blob(repository, EMPTY_JSON)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {
                    "mediaType": mt.OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": mt.OCI_LAYER, "digest": layer_digest, "size": len(EMPTY_JSON)}
                ],
            },
            separators=(",", ":"),
        ).encode()
        return self.client.put_manifest(repository, tag, manifest, mt.OCI_MANIFEST)
