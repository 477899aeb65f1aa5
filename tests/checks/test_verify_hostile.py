"""Hostile answers a real registry cannot give, through httpx.MockTransport.

Each test serves one small image (an index, one child, a config and a layer) and breaks one
answer; verify must report exactly that, as a problem when the bytes are provably wrong and
as `check-error` when it simply could not ask, and must never hang or read without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx

from shipsure import mediatypes as mt
from shipsure.checks.verify import VerifyOptions, verify
from shipsure.findings import Report
from shipsure.model import Digest, Reference
from shipsure.registry import open_registry
from shipsure.registry.retry import RetryPolicy
from tests.checks.small_image import CHILD, INDEX, LAYER, answer, objects

HOST = "registry.test"
REPO = "team/app"

Handler = Callable[[httpx.Request], httpx.Response | None]


def _serve(request: httpx.Request) -> httpx.Response:
    """A well-behaved registry for the small image."""
    path = request.url.path
    if path == "/v2/":
        return httpx.Response(200)
    served = objects(REPO).get(path)
    if served is not None:
        return answer(request, *served)
    # No referrers API and no fallback tag, like distribution 2.8.
    return httpx.Response(404, text="404 page not found\n")


def run(hostile: Handler, *, deep: bool = False) -> Report:
    def handler(request: httpx.Request) -> httpx.Response:
        return hostile(request) or _serve(request)

    fast_retries = RetryPolicy(retries=2, base_delay=0.0, max_delay=0.0, sleep=lambda _s: None)
    with open_registry(
        HOST, transport=httpx.MockTransport(handler), retries=fast_retries, timeout=5
    ) as client:
        return verify(
            [Reference.parse(f"{HOST}/{REPO}:latest")],
            lambda _host: client,
            VerifyOptions(deep=deep),
        )


def found(report: Report) -> list[tuple[str, str | None]]:
    return sorted((f.kind, f.digest) for f in report.findings)


def _for(path_end: str, response: Callable[[httpx.Request], httpx.Response]) -> Handler:
    def hostile(request: httpx.Request) -> httpx.Response | None:
        return response(request) if request.url.path.endswith(path_end) else None

    return hostile


def test_the_served_image_is_clean() -> None:
    assert found(run(lambda _r: None, deep=True)) == []


def test_short_body_is_truncated_blob() -> None:
    def short(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.endswith(str(Digest.of(LAYER))):
            return None
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(LAYER))})
        return httpx.Response(200, content=LAYER[:100])  # the stale cache's short body

    report = run(short, deep=True)
    assert found(report) == [("blob-truncated", str(Digest.of(LAYER)))]


def test_wrong_docker_content_digest_header() -> None:
    wrong = "sha256:" + "0" * 64

    def hostile(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/manifests/latest"):
            headers = {"Content-Type": mt.OCI_INDEX, "Docker-Content-Digest": wrong}
            return httpx.Response(200, headers=headers, content=INDEX)
        return None

    report = run(hostile)
    assert found(report) == [("digest-header-mismatch", str(Digest.of(INDEX)))]


def test_corrupted_child_manifest_body() -> None:
    bad = CHILD.replace(b"amd64", b"arm64") if b"amd64" in CHILD else CHILD + b" "
    child_digest = str(Digest.of(CHILD))
    hostile = _for(
        child_digest,
        lambda _r: httpx.Response(
            200, headers={"Content-Type": mt.OCI_MANIFEST}, content=bad + b" "
        ),
    )
    report = run(hostile)
    assert found(report) == [("manifest-digest-mismatch", child_digest)]


def test_redirect_loop_is_could_not_check() -> None:
    layer = str(Digest.of(LAYER))
    loop = _for(layer, lambda r: httpx.Response(307, headers={"Location": str(r.url)}))
    report = run(loop)
    assert found(report) == [("check-error", layer)]
    assert report.exit_code() == 3


def test_5xx_storm_is_could_not_check_after_bounded_retries() -> None:
    calls: list[str] = []

    def storm(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" in request.url.path:
            calls.append(request.url.path)
            return httpx.Response(503, text="overloaded")
        return None

    report = run(storm)
    assert sorted(f.kind for f in report.findings) == ["check-error", "check-error"]
    assert not report.problems
    assert len(calls) == 2 * 3  # two blobs, each tried once and retried twice


def test_endless_blob_body_stops_at_the_declared_size() -> None:
    def endless_stream() -> Iterator[bytes]:
        while True:
            yield b"x" * 65536

    layer = str(Digest.of(LAYER))
    hostile = _for(
        layer,
        lambda r: httpx.Response(200, content=endless_stream()) if r.method == "GET" else None,  # type: ignore[arg-type,return-value]
    )
    report = run(hostile, deep=True)
    assert found(report) == [("blob-size-mismatch", layer)]


def test_endless_manifest_body_is_refused_not_buffered() -> None:
    def endless_stream() -> Iterator[bytes]:
        while True:
            yield b" " * 65536

    hostile = _for(
        str(Digest.of(CHILD)),
        lambda _r: httpx.Response(
            200, headers={"Content-Type": mt.OCI_MANIFEST}, content=endless_stream()
        ),
    )
    report = run(hostile)
    assert found(report) == [("check-error", str(Digest.of(CHILD)))]
    assert "byte limit" in report.findings[0].message


def test_huge_manifest_with_declared_length_is_refused() -> None:
    huge = b" " * (5 * 1024 * 1024)
    hostile = _for(
        "/manifests/latest",
        lambda _r: httpx.Response(200, headers={"Content-Type": mt.OCI_INDEX}, content=huge),
    )
    report = run(hostile)
    assert [f.kind for f in report.findings] == ["check-error"]


def test_invalid_json_at_a_digest_is_a_digest_mismatch_or_invalid_manifest() -> None:
    garbage = b"{not json"
    child_digest = str(Digest.of(CHILD))
    hostile = _for(
        child_digest,
        lambda _r: httpx.Response(200, headers={"Content-Type": mt.OCI_MANIFEST}, content=garbage),
    )
    assert found(run(hostile)) == [("manifest-digest-mismatch", child_digest)]
    # By tag nothing pins the digest, so the bytes themselves are the problem.
    by_tag = _for(
        "/manifests/latest",
        lambda _r: httpx.Response(200, headers={"Content-Type": mt.OCI_INDEX}, content=garbage),
    )
    assert found(run(by_tag)) == [("manifest-invalid", str(Digest.of(garbage)))]


def test_auth_refused_is_could_not_check() -> None:
    refused = _for("/manifests/latest", lambda _r: httpx.Response(403, text="denied"))
    report = run(refused)
    assert [f.kind for f in report.findings] == ["check-error"]
    assert report.exit_code() == 3
