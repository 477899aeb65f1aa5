"""Registry authentication as one flow: anonymous, Basic and Bearer tokens.

The flow follows docker's token protocol (distribution docs/spec/auth/token.md):
a request answered `401` with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
makes us GET `realm?service=...&scope=...` (with Basic credentials when we have them, or
POST an OAuth2 refresh-token grant when we hold an identity token), take `token` or
`access_token` from the JSON answer, and send the request again. Tokens are cached per scope
and sent pre-emptively on later requests of the same repository, so a walk pays the
challenge once per repository, not once per request. A `Basic` challenge is answered with
the username and password, which are then sent pre-emptively too.

`RegistryAuth.flow(request)` is a generator in the manner of httpx's auth flows: it yields
the requests to send and is sent each answer, so it never touches the network itself and
the client decides how requests travel (`wire.py`).

Credentials go only to the registry host itself and to the token realm it names, never
over plain HTTP to a host for which plain HTTP was not allowed (a loopback host, or any
host with `--insecure`): a loopback registry naming a plain-HTTP realm elsewhere gets none.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Generator
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode

from shipsure.registry.credentials import NO_CREDENTIALS_HINT, CredentialProvider, Credentials
from shipsure.registry.interface import AuthError, ProtocolError
from shipsure.registry.retry import RETRY_STATUSES, TransientError
from shipsure.registry.wire import (
    InvalidURL,
    Malformed,
    Request,
    Response,
    host_of,
    netloc_of,
    normalize_url,
    path_of,
    read_capped,
    scheme_of,
)

Flow = Generator[Request, Response, None]

# Token answers are a few KiB; anything far bigger is hostile.
MAX_TOKEN_BODY = 1024 * 1024
# A 401 body is never needed; read a little so the connection can be reused.
MAX_DISCARDED_BODY = 64 * 1024
# distribution token spec: "expires_in ... default to 60 seconds" when absent.
DEFAULT_TOKEN_SECONDS = 60
CLIENT_ID = "shipsure"

# /v2/<name>/(manifests|blobs|tags|referrers)/<x>: the greedy name takes nested repositories
# whose own path components happen to be called "blobs" or "tags".
_REPOSITORY_PATH = re.compile(r"/v2/(.+)/(?:manifests|blobs|tags|referrers)/[^/]+", re.ASCII)
_CATALOG_PATH = "/v2/_catalog"


def scope_for_path(path: str) -> str | None:
    """The token scope a read of `path` needs, to send a cached token before any 401."""
    if path == _CATALOG_PATH:
        return "registry:catalog:*"
    match = _REPOSITORY_PATH.fullmatch(path)
    return f"repository:{match.group(1)}:pull" if match else None


# NamedTuples rather than frozen dataclasses: as light to use, and each frozen dataclass
# costs about a millisecond of every run's start-up to create.
class Challenge(NamedTuple):
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str]


_SCHEME_RE = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9._~+/-]*)(?=\s|$)")
_PARAM_RE = re.compile(r'\s*,?\s*([A-Za-z0-9._~+-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


def parse_challenges(values: list[str]) -> list[Challenge]:
    """RFC 9110 `WWW-Authenticate` challenges, from one or more header values."""
    found: list[Challenge] = []
    for value in values:
        pos = 0
        while pos < len(value):
            scheme = _SCHEME_RE.match(value, pos)
            if scheme is None:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            while True:
                param = _PARAM_RE.match(value, pos)
                if param is None:
                    break
                raw = param.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[param.group(1).lower()] = raw
                pos = param.end()
            found.append(Challenge(scheme.group(1).lower(), params))
    return found


class _Token(NamedTuple):
    header: str
    expires_at: float  # time.monotonic()


def basic_header(username: str, password: str) -> str:
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def discard_body(response: Response, cap: int = MAX_DISCARDED_BODY) -> None:
    """Read a little of an answer the flow handles itself (a 401), so its connection can
    be reused; a longer body is left unread, and closing the answer then drops it."""
    with contextlib.suppress(Malformed):
        read_capped(response, cap)


class RegistryAuth:
    """Auth flow for one registry host; thread-safe, shared by every request of a client."""

    def __init__(
        self,
        registry_netloc: str,
        credentials: Credentials | CredentialProvider | None = None,
        *,
        plain_http_to: Callable[[str], bool] = lambda _host: False,
        user_agent: str | None = None,
    ) -> None:
        self._netloc = registry_netloc
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._plain_http_to = plain_http_to
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self._scope_locks: dict[str | None, threading.Lock] = {}
        self._tokens: dict[str | None, _Token] = {}
        self._basic: str | None = None

    def __repr__(self) -> str:
        return f"RegistryAuth({self._netloc!r})"

    # -- the flow -------------------------------------------------------------------------

    def flow(self, request: Request) -> Flow:
        """Yields `request` (with credentials when we hold some), then, when it was
        answered 401 with a challenge we can meet, a token request and the request again.
        The caller sends each yielded request and sends its answer back in; the last
        answer is the one to use. Close the generator when done."""
        if netloc_of(request.url) != self._netloc:
            # A redirect to blob storage (S3, a CDN) carries its own signature; our
            # credentials stay with the registry.
            yield request
            return
        path = path_of(request.url)
        sent: str | None = None
        if self._basic is not None or self._tokens:  # anonymous registries skip the look-up
            sent = self._preemptive_header(scope_for_path(path))
            if sent is not None:
                request = request.with_header("Authorization", sent)
        response = yield request
        if response.status != 401:
            return
        scope = scope_for_path(path)
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            discard_body(response)
            wanted = bearer.params.get("scope") or scope
            header = yield from self._bearer_header(bearer, wanted, failed=sent)
            self._store_alias(scope, wanted)
        elif basic is not None:
            answer = self._basic_answer(sent)
            if answer is None:
                return  # nothing better to offer: the 401 stands and becomes an AuthError
            discard_body(response)
            header = answer
        else:
            return
        yield request.with_header("Authorization", header)

    # -- credentials and caches -----------------------------------------------------------

    def credentials(self) -> Credentials | None:
        """Looked up once, on the first challenge: anonymous registries never ask."""
        with self._lock:
            if not self._credentials_loaded:
                source = self._credentials_source
                self._credentials = source() if callable(source) else source
                self._credentials_loaded = True
            return self._credentials

    def refusal(self) -> str:
        """What a 401 that stands means, for its message: whose credentials were refused,
        or that none were found (and where they could come from)."""
        creds = self.credentials()
        if creds is None:
            return f"no credentials for {self._netloc}: {NO_CREDENTIALS_HINT}"
        return f"credentials from {creds.source} refused"

    def _preemptive_header(self, scope: str | None) -> str | None:
        if self._basic is not None:
            return self._basic
        token = self._tokens.get(scope)
        if token is not None and token.expires_at > time.monotonic():
            return token.header
        return None

    def _scope_lock(self, scope: str | None) -> threading.Lock:
        with self._lock:
            lock = self._scope_locks.get(scope)
            if lock is None:
                lock = self._scope_locks[scope] = threading.Lock()
            return lock

    def _store_alias(self, path_scope: str | None, token_scope: str | None) -> None:
        # The registry may name a scope spelled differently from ours; remember the token
        # under the scope our next request of this path will look up.
        if path_scope != token_scope and token_scope in self._tokens:
            self._tokens[path_scope] = self._tokens[token_scope]

    def _basic_answer(self, sent: str | None) -> str | None:
        creds = self.credentials()
        if creds is None or creds.username is None or creds.password is None:
            return None
        header = basic_header(creds.username, creds.password)
        if header == sent:
            return None  # these credentials were just refused
        self._basic = header
        return header

    # -- bearer tokens --------------------------------------------------------------------

    def _bearer_header(
        self, challenge: Challenge, scope: str | None, failed: str | None
    ) -> Generator[Request, Response, str]:
        # One thread fetches a scope's token while the others wait and then reuse it. The
        # lock is held across a yield: the client closes the flow when it stops early.
        with self._scope_lock(scope):
            cached = self._preemptive_header(scope)
            if cached is not None and cached != failed and not cached.startswith("Basic "):
                return cached
            token_request = self._token_request(challenge, scope)
            response = yield token_request
            token = self._read_token(response, token_request, scope)
            self._tokens[scope] = token
            return token.header

    def _token_request(self, challenge: Challenge, scope: str | None) -> Request:
        registry = self._netloc
        realm = challenge.params.get("realm")
        if not realm:
            raise ProtocolError(f"registry {registry} sent a Bearer challenge without a realm")
        try:
            url = normalize_url(realm)
        except InvalidURL:
            raise ProtocolError(f"registry {registry} sent an invalid token realm") from None
        if scheme_of(url) not in ("http", "https"):
            raise ProtocolError(f"registry {registry} sent a token realm that is not an HTTP URL")
        creds = self.credentials()
        if creds is not None and scheme_of(url) == "http" and not self._plain_http_to(host_of(url)):
            # Plain HTTP allowed for the registry (a loopback one, say) is not allowed for
            # whatever host its challenge names: the password would cross the network.
            raise AuthError(
                f"registry {registry} asks for credentials over plain HTTP "
                f"(token realm {host_of(url)}); refusing without --insecure"
            )
        params: dict[str, str] = {}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        if scope:
            params["scope"] = scope
        headers = [("Accept", "application/json"), ("Accept-Encoding", "identity")]
        if self._user_agent:
            headers.append(("User-Agent", self._user_agent))
        if creds is not None and creds.identity_token:
            # docker's OAuth2 path: trade the identity (refresh) token for an access token.
            form = {
                **params,
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": CLIENT_ID,
            }
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            return Request("POST", url, headers, urlencode(form).encode("ascii"))
        if creds is not None and creds.username and creds.password is not None:
            params["account"] = creds.username
            headers.append(("Authorization", basic_header(creds.username, creds.password)))
        return Request("GET", _merge_query(url, params), headers)

    def _read_token(self, response: Response, request: Request, scope: str | None) -> _Token:
        where = f"token server {host_of(request.url)}"
        what = f"scope {scope}" if scope else "the registry"
        status = response.status
        try:
            decoded, overflow = read_capped(response, MAX_TOKEN_BODY)
        except Malformed as exc:
            raise ProtocolError(
                f"{where} sent a token answer that does not decode: {exc}"
            ) from None
        if status in (401, 403):
            creds = self.credentials()
            who = f"credentials from {creds.source}" if creds else "anonymous access"
            raise AuthError(f"{where} refused {who} for {what} (HTTP {status})", status=status)
        if status in RETRY_STATUSES or status >= 500:
            raise TransientError(f"{where} answered HTTP {status} for {what}")
        if status != 200:
            raise ProtocolError(f"{where} answered HTTP {status} for {what}", status=status)
        if overflow:
            raise ProtocolError(f"{where} sent a token answer over {MAX_TOKEN_BODY} bytes")
        try:
            doc = json.loads(decoded)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ProtocolError(f"{where} sent a token answer that is not JSON") from None
        token = None
        if isinstance(doc, dict):
            token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not _header_safe(token):
            raise ProtocolError(f"{where} sent no token for {what}")
        expires_in = doc.get("expires_in")
        lifetime = (
            expires_in
            if isinstance(expires_in, int) and not isinstance(expires_in, bool)
            else DEFAULT_TOKEN_SECONDS
        )
        lifetime = max(lifetime, DEFAULT_TOKEN_SECONDS)
        # Renew a little early, so a token never expires between our check and its use.
        return _Token(f"Bearer {token}", time.monotonic() + lifetime * 0.9)


def _header_safe(token: str) -> bool:
    """A token goes into a header: printable ASCII only (no line breaks to inject)."""
    return bool(token) and token.isascii() and token.isprintable()


def _merge_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` set in its query (replacing any of the same name)."""
    if not params:
        return url
    base, _, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in params]
    return f"{base}?{urlencode([*kept, *params.items()])}"
