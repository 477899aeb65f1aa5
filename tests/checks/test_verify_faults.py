"""Faults found by trying real-world inputs on `verify`: platforms spelled differently from
the filter, names outside the ASCII grammar, credentials in a reference, and registries or
proxies that refuse HEAD on blobs while GET works. Each is a small served image; the
refusals of HEAD are answers no real registry gives, so they are served here."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.checks.verify import VerifyOptions, verify
from shipsure.cli.main import main
from shipsure.findings import Report
from shipsure.model import Digest, Platform, Reference
from shipsure.registry import open_registry
from shipsure.registry.mock_server import hostile_server
from shipsure.registry.mock_wire import MockAnswer
from shipsure.registry.retry import RetryPolicy
from shipsure.registry.wire import Request
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry
from tests.checks.small_image import desc

HOST = "registry.test"
REPO = "team/app"
LAYER = b"layer bytes " * 100
CONFIG = b'{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def _child(arch: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": desc(mt.OCI_CONFIG, CONFIG),
            "layers": [desc(mt.OCI_LAYER_GZIP, LAYER)],
            "annotations": {"arch": arch},
        }
    ).encode()


ARM64, AMD64, ARMV7 = _child("arm64"), _child("amd64"), _child("arm")
INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            # As many builders write it: arm64 without its default variant v8.
            desc(mt.OCI_MANIFEST, ARM64, platform={"os": "linux", "architecture": "arm64"}),
            desc(mt.OCI_MANIFEST, AMD64, platform={"os": "linux", "architecture": "amd64"}),
            desc(
                mt.OCI_MANIFEST,
                ARMV7,
                platform={"os": "linux", "architecture": "arm", "variant": "v7"},
            ),
        ],
    }
).encode()
OBJECTS = {
    f"/v2/{REPO}/manifests/latest": (INDEX, mt.OCI_INDEX),
    **{
        f"/v2/{REPO}/manifests/{Digest.of(m)}": (m, mt.OCI_MANIFEST)
        for m in (INDEX, ARM64, AMD64, ARMV7)
    },
    f"/v2/{REPO}/blobs/{Digest.of(CONFIG)}": (CONFIG, "application/octet-stream"),
    f"/v2/{REPO}/blobs/{Digest.of(LAYER)}": (LAYER, "application/octet-stream"),
}

Handler = Callable[[httpx.Request], httpx.Response | None]


def _serve(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v2/":
        return httpx.Response(200)
    found = OBJECTS.get(request.url.path)
    if found is None:
        return httpx.Response(404, text="404 page not found\n")
    body, media_type = found
    headers = {
        "Content-Type": media_type,
        "Docker-Content-Digest": str(Digest.of(body)),
        "Content-Length": str(len(body)),
    }
    return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)


def run(
    hostile: Handler = lambda _r: None, *, platforms: tuple[str, ...] = (), deep: bool = False
) -> tuple[Report, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return hostile(request) or _serve(request)

    policy = RetryPolicy(retries=1, base_delay=0.0, max_delay=0.0, sleep=lambda _s: None)
    with open_registry(HOST, transport=httpx.MockTransport(handler), retries=policy) as client:
        report = verify(
            [Reference.parse(f"{HOST}/{REPO}:latest")],
            lambda _host: client,
            VerifyOptions(deep=deep, platforms=tuple(Platform.parse(p) for p in platforms)),
        )
    return report, seen


def found(report: Report) -> list[tuple[str, str | None]]:
    return sorted((f.kind, f.digest) for f in report.findings)


# -- platforms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "child", "digest"),
    [
        ("linux/arm64/v8", "linux/arm64", Digest.of(ARM64)),
        ("linux/aarch64", "linux/arm64", Digest.of(ARM64)),
        ("linux/arm64", "linux/arm64", Digest.of(ARM64)),
        ("linux/x86_64", "linux/amd64", Digest.of(AMD64)),
        ("linux/amd64/v1", "linux/amd64", Digest.of(AMD64)),
        ("linux/armhf", "linux/arm/v7", Digest.of(ARMV7)),
        ("linux/arm", "linux/arm/v7", Digest.of(ARMV7)),
    ],
)
def test_platform_filter_matches_as_containerd_and_says_which_child(
    wanted: str, child: str, digest: Digest
) -> None:
    report, seen = run(platforms=(wanted,))
    assert found(report) == []
    assert report.meta["platform_matches"] == [
        {"platform": str(Platform.parse(wanted)), "child": child, "digest": str(digest)}
    ]
    fetched = {r.url.path.rsplit("/", 1)[1] for r in seen if "/manifests/sha256:" in r.url.path}
    assert fetched == {str(digest)}  # only the matched child was walked


def test_platform_that_no_child_has_lists_what_the_index_has() -> None:
    report, _ = run(platforms=("linux/arm64/v9",))
    assert found(report) == [("platform-not-found", str(Digest.of(INDEX)))]
    message = report.findings[0].message
    assert "linux/arm64/v9" in message and "linux/amd64, linux/arm/v7, linux/arm64" in message


# -- blobs when HEAD is refused -------------------------------------------------------------


def _refuse_head_on_blobs(status: int, *, get: Handler = lambda _r: None) -> Handler:
    def hostile(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" not in request.url.path:
            return None
        if request.method == "HEAD":
            return httpx.Response(status, headers={"Allow": "GET"})
        return get(request)

    return hostile


@pytest.mark.parametrize("status", [405, 501, 403])
def test_blob_head_refused_is_confirmed_by_a_bounded_get(status: int) -> None:
    report, seen = run(_refuse_head_on_blobs(status))
    assert found(report) == [] and report.exit_code() == 0
    gets = [r for r in seen if r.method == "GET" and "/blobs/" in r.url.path]
    assert len(gets) == 2  # config and layer, once each


@pytest.mark.parametrize("status", [405, 501, 403])
def test_blob_head_refused_and_get_404_is_missing(status: int) -> None:
    layer = Digest.of(LAYER)

    def gone(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith(str(layer)):
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})
        return None

    report, _ = run(_refuse_head_on_blobs(status, get=gone))
    assert found(report) == [("blob-missing", str(layer))]


def test_blob_head_refused_get_with_another_length_is_a_size_mismatch() -> None:
    layer = Digest.of(LAYER)

    def shorter(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith(str(layer)):
            return httpx.Response(200, content=LAYER[:10])
        return None

    report, _ = run(_refuse_head_on_blobs(405, get=shorter))
    assert found(report) == [("blob-size-mismatch", str(layer))]


def test_blob_head_and_get_both_refused_is_could_not_check() -> None:
    report, _ = run(_refuse_head_on_blobs(403, get=lambda _r: httpx.Response(403)))
    assert {f.kind for f in report.findings} == {"check-error"}
    assert report.exit_code() == 3


# -- the command line: usage errors before any request -----------------------------------


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


def _no_connection_came(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.mark.parametrize(
    "path",
    ["team/app:1234-\u0441ount", "team/\u0441ount:v1", "team/app:v\uff11"],
)
def test_non_ascii_name_is_a_usage_error_before_any_request(
    path: str, listener: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    port = listener.getsockname()[1]
    with listener:
        assert main(["verify", f"127.0.0.1:{port}/{path}"]) == 2
        assert _no_connection_came(listener)
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "ASCII" in err


@pytest.mark.parametrize(
    "text",
    [
        "ci:PW@127.0.0.1:{port}/team/app:v1",
        "ci:PW@127.0.0.1:{port}/team/app@sha256:" + "a" * 64,
        "PW@127.0.0.1:{port}/team/app",
    ],
)
def test_credentials_in_a_reference_are_masked_exit_2_and_say_how(
    text: str, listener: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    port = listener.getsockname()[1]
    with listener:
        assert main(["verify", "--format", "json", text.format(port=port)]) == 2
        assert _no_connection_came(listener)
    out, err = capsys.readouterr()
    assert "PW" not in out + err
    assert len(err.strip().splitlines()) == 1
    assert "***@127.0.0.1" in err and "--password-stdin" in err


# -- a proxy that refuses HEAD on blobs, in front of the real registry ----------------------


def _head_refusing_proxy(upstream_port: int, status: int) -> Callable[[Request], MockAnswer]:
    """Forwards to the registry over HTTP; answers HEAD on a blob with `status` itself."""

    def handler(request: Request) -> MockAnswer:
        target = "/" + request.url.split("/", 3)[3]
        if request.method == "HEAD" and "/blobs/" in target:
            return MockAnswer(status, [("Allow", "GET")], b"")
        upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
        try:
            kept = [(k, v) for k, v in request.headers if k.lower() not in ("host", "connection")]
            upstream.request(request.method, target, headers=dict(kept))
            answer = upstream.getresponse()
            body = answer.read()
            headers = [
                (k, v)
                for k, v in answer.getheaders()
                if k.lower() not in ("connection", "transfer-encoding", "content-length")
            ]
            if request.method == "HEAD":
                headers.append(("Content-Length", answer.getheader("Content-Length") or "0"))
            return MockAnswer(answer.status, headers, body)
        finally:
            upstream.close()

    return handler


@pytest.mark.parametrize("status", [405, 501, 403])
def test_real_registry_behind_a_head_refusing_proxy(
    status: int,
    registry: SandboxRegistry,
    repo_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = images.push_image(registry.url, repo_name, "v1", layers=2)
    with hostile_server(_head_refusing_proxy(registry.port, status)) as proxy:
        ref = f"{proxy.host}/{repo_name}:v1"
        assert main(["verify", "--format", "json", ref]) == 0
        heads = [r for r in proxy.requests if r.method == "HEAD" and "/blobs/" in r.url]
        gets = [r for r in proxy.requests if r.method == "GET" and "/blobs/" in r.url]
        assert len(heads) == len(gets) == 3  # the config and two layers
        capsys.readouterr()
        # A lost layer is still found, by the GET that confirms it.
        lost = image.layer_digests[0]
        faults.remove_layer_link(registry.root, repo_name, lost)
        assert main(["verify", "--format", "json", ref]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(f["kind"], f["digest"]) for f in findings] == [("blob-missing", lost)]
