"""Answers no real registry gives on demand, through httpx.MockTransport: a catalog that
refuses `n` or pages smaller than asked, a 503 storm, refused credentials."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.checks.probe import AUTH_FAILING, CATALOG_INACCESSIBLE, ProbeOptions, probe
from shipsure.findings import Report
from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.registry.retry import RetryPolicy
from tests.checks.small_image import CHILD, INDEX, answer, objects

HOST = "registry.test"
REPOS = [f"team/app{i}" for i in range(7)]
PAGE = 2  # the most this registry ever lists per catalog page


def _catalog(request: httpx.Request, *, refuse_n: bool) -> httpx.Response:
    params = request.url.params
    if refuse_n and "n" in params:
        body = {"errors": [{"code": "PAGINATION_NUMBER_INVALID", "message": "invalid n"}]}
        return httpx.Response(400, json=body)
    last = params.get("last")
    start = REPOS.index(last) + 1 if last else 0
    page = REPOS[start : start + PAGE]
    headers = {}
    if start + PAGE < len(REPOS):
        headers["Link"] = f'</v2/_catalog?last={page[-1]}>; rel="next"'
    return httpx.Response(200, json={"repositories": page}, headers=headers)


def _object(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    for repo in REPOS:
        if path == f"/v2/{repo}/tags/list":
            return httpx.Response(200, json={"name": repo, "tags": ["latest"]})
        served = objects(repo).get(path)
        if served is not None:
            return answer(request, *served)
    return httpx.Response(404, text="404 page not found\n")


Hostile = Callable[[httpx.Request], httpx.Response | None]


def _run(hostile: Hostile | None = None, *, refuse_n: bool = False) -> tuple[Report, list[str]]:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.method} {request.url.raw_path.decode()}")
        if hostile is not None:
            answer = hostile(request)
            if answer is not None:
                return answer
        if request.url.path == "/v2/":
            return httpx.Response(200)
        if request.url.path == "/v2/_catalog":
            return _catalog(request, refuse_n=refuse_n)
        return _object(request)

    policy = RetryPolicy(retries=2, base_delay=0.001, max_delay=0.002, sleep=lambda _: None)
    with open_registry(HOST, transport=httpx.MockTransport(handler), retries=policy) as registry:
        report = probe(registry, ProbeOptions(workers=4, batch_tags=3, referrers=False))
    return report, asked


def test_catalog_with_pages_smaller_than_asked_is_followed_to_the_end() -> None:
    report, asked = _run()
    assert report.findings == []
    assert report.meta["probe"]["repositories"] == len(REPOS)
    assert report.meta["probe"]["tags_checked"] == len(REPOS)
    assert report.meta["probe"]["complete"] is True
    assert any("/v2/_catalog?n=1000" in a for a in asked)


def test_a_registry_refusing_n_is_asked_without_it() -> None:
    report, asked = _run(refuse_n=True)
    assert report.findings == []
    assert report.meta["probe"]["repositories"] == len(REPOS)
    assert "GET /v2/_catalog" in asked


def test_a_503_storm_is_could_not_check_never_missing() -> None:
    served = {"n": 0}

    def storm(request: httpx.Request) -> httpx.Response | None:
        # Catalog and tags answer; the objects of the first repositories meet a storm
        # longer than the retries, then it passes.
        if "/manifests/" in request.url.path or "/blobs/" in request.url.path:
            served["n"] += 1
            if served["n"] <= 12:
                return httpx.Response(503, text="Service Unavailable")
        return None

    report, _ = _run(storm)
    meta = report.meta["probe"]
    assert report.problems == []
    assert report.check_errors
    assert all(f.details.get("status") == 503 for f in report.check_errors)
    assert meta["complete"] is False and meta["unchecked"]
    assert 0 < meta["tags_checked"] < len(REPOS)
    assert int(report.exit_code()) == 3


def test_an_unavailable_catalog_is_its_own_state() -> None:
    def down(request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(503) if request.url.path == "/v2/_catalog" else None

    report, _ = _run(down)
    assert report.problems == []
    assert [f.details["state"] for f in report.findings] == [CATALOG_INACCESSIBLE]
    assert report.meta["probe"]["catalog_accessible"] is False


def test_refused_credentials_are_auth_failing_not_missing() -> None:
    def refuse(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/v2/team/app3/"):
            return httpx.Response(403, json={"errors": [{"code": "DENIED"}]})
        return None

    report, _ = _run(refuse)
    assert report.problems == []
    assert {f.details["state"] for f in report.findings} == {AUTH_FAILING}
    assert report.meta["probe"]["auth_accepted"] is False
    assert report.meta["probe"]["unchecked"][0]["repository"] == "team/app3"


def test_a_repository_larger_than_a_batch_checks_each_blob_once() -> None:
    many = [f"t{i}" for i in range(7)]  # batches of 3 tags: walked in 3 chunks

    def big(request: httpx.Request) -> httpx.Response | None:
        path = request.url.path
        if path == "/v2/team/app0/tags/list":
            return httpx.Response(200, json={"name": "team/app0", "tags": many})
        if path.startswith("/v2/team/app0/manifests/t"):
            headers = {"Content-Type": mt.OCI_INDEX, "Docker-Content-Digest": str(Digest.of(INDEX))}
            return httpx.Response(200, headers=headers, content=INDEX)
        return None

    report, asked = _run(big)
    assert report.findings == []
    assert report.meta["probe"]["tags_checked"] == len(REPOS) - 1 + len(many)
    assert len([a for a in asked if a.startswith("HEAD /v2/team/app0/blobs/")]) == 2
    assert (
        len([a for a in asked if a.startswith(f"GET /v2/team/app0/manifests/{Digest.of(CHILD)}")])
        == 1
    )


def test_invalid_names_in_the_catalog_or_a_tag_list_are_could_not_check() -> None:
    # `../../etc` and `Team/App` are no repository names and `../x` no tag: the run used to
    # stop there with "invalid repository name" (exit 2, as if the user had typed it).
    def odd(request: httpx.Request) -> httpx.Response | None:
        path = request.url.path
        if path == "/v2/_catalog":
            return httpx.Response(200, json={"repositories": [*REPOS[:2], "../../etc"]})
        if path == "/v2/team/app1/tags/list":
            return httpx.Response(
                200, json={"name": "team/app1", "tags": ["latest", "../x", "\x1b[2J"]}
            )
        return None

    report, _ = _run(odd)
    meta = report.meta["probe"]
    assert report.problems == []
    errors = sorted(report.check_errors, key=lambda f: (str(f.repository), f.message))
    assert [(f.repository, f.details["state"]) for f in errors] == [
        ("../../etc", "coverage-partial"),
        ("team/app1", "coverage-partial"),
        ("team/app1", "coverage-partial"),
    ]
    assert "the catalog lists an invalid repository name '../../etc'" in errors[0].message
    assert errors[1].message == "could not check: invalid tag or digest '../x'"
    assert meta["tags_checked"] == 2  # latest of app0 and app1
    assert meta["complete"] is False
    assert int(report.exit_code()) == 3


def test_a_catalog_page_repeating_its_last_name_walks_it_once() -> None:
    def repeat(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != "/v2/_catalog":
            return None
        last = request.url.params.get("last")
        if last is None:
            headers = {"Link": '</v2/_catalog?last=team/app1>; rel="next"'}
            return httpx.Response(200, json={"repositories": REPOS[:2]}, headers=headers)
        return httpx.Response(200, json={"repositories": [last, *REPOS[2:4]]})

    report, asked = _run(repeat)
    assert report.findings == []
    assert report.meta["probe"]["repositories"] == 4
    assert len([a for a in asked if a == "GET /v2/team/app1/tags/list"]) == 1


@pytest.mark.parametrize(
    ("path", "status", "body", "reason"),
    [
        ("/v2/team/app3/tags/list", 403, {"errors": [{"code": "DENIED"}]}, "access refused"),
        ("/v2/team/app3/tags/list", 503, None, "registry unavailable (HTTP 503)"),
        ("/v2/team/app3/tags/list", 200, {"tags": 5}, "unusable answer"),
        ("/v2/team/app3/manifests/latest", 401, {}, "access refused"),
        ("/v2/team/app3/manifests/latest", 502, None, "registry unavailable (HTTP 502)"),
        ("/v2/team/app3/manifests/latest", 200, [], "unusable answer"),
    ],
)
def test_coverage_says_why_a_repository_went_unchecked(
    path: str, status: int, body: object, reason: str
) -> None:
    """Whether its tags could not be listed or their walk could not ask, the reason reads
    the same: refused, unavailable (with the status) or an unusable answer."""

    def broken(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != path:
            return None
        if body is None:
            return httpx.Response(status)
        # A manifest answer whose Content-Length is no number is unusable.
        headers = {"Content-Length": "x"} if body == [] else {}
        return httpx.Response(status, json=body, headers=headers)

    report, _ = _run(broken)
    unchecked = report.meta["probe"]["unchecked"]
    assert [(u["repository"], u["reasons"]) for u in unchecked] == [("team/app3", [reason])]
    assert report.problems == []
