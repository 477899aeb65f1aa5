"""probe of a registry that refuses its catalog (Docker Hub, GHCR and Harbor do, for most
users), behind a proxy that answers `/v2/_catalog` 401 in front of a real registry: `--repo`
values that are plain names are still probed, so a broken tag is found (exit 1) rather than
nothing checked at all. A glob needs the catalog: it matches nothing, and the catalog's
state (catalog-inaccessible) is still reported. A named repository the registry does not
know (its tags list answers NAME_UNKNOWN) is warned about, as a `--repo` that matches no
catalog name is when the catalog is readable: never a silent repository of 0 tags."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

import pytest

from shipsure.cli.main import main
from shipsure.registry.mock_server import hostile_server
from shipsure.registry.mock_wire import MockAnswer
from shipsure.registry.wire import Request
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry


def _catalog_refusing_proxy(upstream_port: int) -> Callable[[Request], MockAnswer]:
    def handler(request: Request) -> MockAnswer:
        target = "/" + request.url.split("/", 3)[3]
        if target.startswith("/v2/_catalog"):
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"catalog refused"}]}'
            return MockAnswer(401, [("Content-Type", "application/json")], body)
        upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
        try:
            kept = [(k, v) for k, v in request.headers if k.lower() not in ("host", "connection")]
            upstream.request(request.method, target, headers=dict(kept))
            answer = upstream.getresponse()
            body = answer.read()
            dropped = ("connection", "transfer-encoding", "content-length")
            headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in dropped]
            if request.method == "HEAD":
                headers.append(("Content-Length", answer.getheader("Content-Length") or "0"))
            return MockAnswer(answer.status, headers, body)
        finally:
            upstream.close()

    return handler


def test_named_repositories_are_probed_without_the_catalog(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    images.push_image(registry.url, repo_name, "v2")
    faults.remove_blob_data(registry.root, image.layer_digests[0])
    with hostile_server(_catalog_refusing_proxy(registry.port)) as proxy:
        argv = ["probe", "--format", "json", proxy.host, "--repo", repo_name]
        code = main([*argv, "--repo", "team/*", "--repo", f"{repo_name}-never-pushed"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 1
    assert [(f["kind"], f["digest"]) for f in doc["findings"] if f["kind"] != "check-error"] == [
        ("blob-missing", image.layer_digests[0])
    ]
    probe = doc["probe"]
    assert probe["catalog_accessible"] is False  # still said: other repositories unseen
    assert probe["tags_checked"] == 2
    assert probe["repositories"] == 1  # the glob needs the catalog; the unknown is none
    assert probe["repositories_unknown"] == [f"{repo_name}-never-pushed"]
    assert probe["repository_globs_unmatched"] == []  # not known without the catalog
    assert err == (
        f"shipsure: warning: --repo '{repo_name}-never-pushed': the registry does not know "
        "this repository (its tags list answered 404)\n"
    )


def test_an_unknown_name_is_warned_about_with_or_without_the_catalog(
    registry: SandboxRegistry, repo_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images.push_image(registry.url, repo_name, "v1")
    unknown = f"{repo_name}-never-pushed"
    argv = ["probe", "--repo", repo_name, "--repo", unknown]
    assert main([*argv, registry.host]) == 0
    with_catalog = capsys.readouterr()
    assert f"  warning: --repo '{unknown}' matched no repository in the catalog\n" in (
        with_catalog.out
    )
    with hostile_server(_catalog_refusing_proxy(registry.port)) as proxy:
        code = main([*argv, proxy.host])
    without = capsys.readouterr()
    assert code == 3  # catalog-inaccessible: could not check the rest of the registry
    assert (
        f"  warning: --repo '{unknown}': the registry does not know this repository "
        "(its tags list answered 404)\n"
    ) in without.out
    assert "1 repositories (0 unlisted), 1/1 tags checked" in with_catalog.out
    assert "1 repositories (0 unlisted), 1/1 tags checked" in without.out
