"""Talking to a registry over HTTP: the seam (interface.py), its client and auth.

`open_registry(host)` is the one way in: it picks the scheme (HTTPS, plain HTTP for
loopback hosts as docker and crane do), TLS verification, credentials and limits, and
returns a thread-safe `Registry`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shipsure import __version__
from shipsure.errors import BadInputError, UsageError
from shipsure.model import is_host
from shipsure.registry.auth import RegistryAuth
from shipsure.registry.credentials import CredentialProvider, Credentials
from shipsure.registry.http import HttpRegistry
from shipsure.registry.retry import RetryPolicy
from shipsure.registry.transport import KeepAliveWire
from shipsure.registry.wire import InvalidURL, Timeouts, Wire, netloc_of, normalize_url

if TYPE_CHECKING:
    import httpx

# Seconds each whole request may take (connect, headers, body: `wire.Timeouts`), plus one
# per MiB of body received; connecting alone gets at most 10.
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 16
DEFAULT_RETRIES = 3
MAX_CONCURRENCY = 256
USER_AGENT = f"shipsure/{__version__}"

# docker.io is a name; the API lives on registry-1.docker.io (docker's DefaultV2Registry).
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one registry host."""

    host: str  # as the user named it, without scheme: what messages show
    base_url: str  # scheme://netloc of the API
    plain_http_allowed: bool
    probe_scheme: bool  # --insecure without a scheme: try HTTPS, fall back to HTTP
    # A loopback host without a scheme: plain HTTP, moving to HTTPS when the server says
    # it only speaks TLS (a local registry with a certificate, as docker also reaches).
    https_upgrade: bool = False


def is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_endpoint(host: str, *, insecure: bool = False) -> Endpoint:
    """`registry.example.com[:port]`, optionally with `https://` or `http://` in front."""
    text = host.strip()
    # A host option is never a digest: anything before an "@" is user-info to hide.
    shown = host if "@" not in host else "***@" + host.rpartition("@")[2]
    scheme: str | None = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise BadInputError(f"registry {shown!r}: scheme must be http or https")
    text = text.rstrip("/")
    if "@" in text:
        raise BadInputError(
            f"registry {shown!r}: a host holds no credentials; give them with --username "
            "and --password-stdin, the environment or docker's config.json"
        )
    if not is_host(text):
        raise BadInputError(f"registry {shown!r}: not a host[:port]")
    hostname = text.rsplit(":", 1)[0] if not text.endswith("]") and ":" in text else text
    loopback = is_loopback(hostname)
    netloc = DOCKER_HUB_API if hostname.lower() in DOCKER_HUB_HOSTS else text
    if scheme == "http" and not (insecure or loopback):
        raise UsageError(f"registry {shown!r}: plain HTTP needs --insecure")
    probe = False
    if scheme is None:
        scheme = "http" if loopback else "https"
        probe = insecure and not loopback
    return Endpoint(
        host=text,
        base_url=f"{scheme}://{netloc}",
        plain_http_allowed=insecure or loopback,
        probe_scheme=probe,
        https_upgrade=scheme == "http" and loopback and "://" not in host,
    )


def tls_context(insecure: bool, ca_file: str | None) -> ssl.SSLContext:
    """Verified TLS with the system's CAs or `ca_file`; `insecure` verifies nothing."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        # SSLError is an OSError too, but its strerror is OpenSSL's jargon.
        unreadable = not isinstance(exc, ssl.SSLError) and exc.strerror
        reason = unreadable or "not a PEM certificate bundle"
        raise BadInputError(f"--ca-file {ca_file}: {reason}") from None


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def proxies_configured(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name) or env.get(name.upper()) for name in _PROXY_VARIABLES)


def open_registry(
    host: str,
    *,
    insecure: bool = False,
    ca_file: str | None = None,
    credentials: Credentials | CredentialProvider | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    retries: int | RetryPolicy = DEFAULT_RETRIES,
    transport: httpx.BaseTransport | Wire | None = None,
) -> HttpRegistry:
    """A thread-safe `Registry` for `host`. Close it when done (or use it as a context).

    `credentials` may be a provider called on the first challenge only, so that anonymous
    registries never make shipsure read docker's config or run a credential helper.
    `transport` replaces the network: an httpx transport (tests hand an
    `httpx.MockTransport`) or a `wire.Wire`.
    """
    if not timeout > 0:
        raise UsageError(f"timeout {timeout}: must be above 0 seconds")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"concurrency {concurrency}: must be 1..{MAX_CONCURRENCY}")
    policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)
    if policy.retries < 0:
        raise UsageError(f"retries {policy.retries}: must be 0 or more")
    endpoint = resolve_endpoint(host, insecure=insecure)
    try:
        base_url = normalize_url(endpoint.base_url).rstrip("/")
    except InvalidURL:
        # distribution's host grammar takes any digits as a port; a socket does not.
        raise UsageError(
            f"registry {host!r}: not a host[:port] a request can go to (ports are 1..65535)"
        ) from None
    # Our lean wire speaks to the registry directly; with a proxy configured in the
    # environment, httpx's own transport (which knows proxies) takes over.
    use_proxies = transport is None and proxies_configured()
    needs_tls_now = use_proxies or ca_file is not None or base_url.startswith("https:")
    # Build the TLS context up front when it will surely be used (and so that a bad
    # --ca-file is a usage error at once); a plain-HTTP registry may still redirect to
    # HTTPS storage, so it gets the context lazily.
    context: ssl.SSLContext | None = tls_context(insecure, ca_file) if needs_tls_now else None
    wire: Wire
    if transport is not None and hasattr(transport, "handle_request"):
        from shipsure.registry.httpx_wire import HttpxWire

        wire = HttpxWire.over(transport)  # type: ignore[arg-type]
    elif transport is not None:
        wire = transport
    elif use_proxies:
        from shipsure.registry.httpx_wire import HttpxWire

        assert context is not None
        wire = HttpxWire.with_environment_proxies(context, concurrency + 2)
    else:
        wire = KeepAliveWire(
            ssl_context=context or (lambda: tls_context(insecure, ca_file)),
            max_idle=concurrency + 2,
        )
    auth = RegistryAuth(
        netloc_of(base_url),
        credentials,
        plain_http_to=lambda realm_host: insecure or is_loopback(realm_host),
        user_agent=USER_AGENT,
    )
    return HttpRegistry(
        endpoint.host,
        base_url,
        wire,
        auth,
        headers=[("User-Agent", USER_AGENT), ("Accept-Encoding", "identity")],
        timeouts=Timeouts(connect=min(timeout, 10.0), read=timeout, total=timeout),
        concurrency=concurrency,
        retry=policy,
        scheme_fallback=endpoint.probe_scheme,
        https_upgrade=endpoint.https_upgrade,
    )


__all__ = ["Endpoint", "HttpRegistry", "open_registry", "resolve_endpoint"]
