"""`verify --timeout` bounds each whole request: a registry that drips any part of any answer
(status line, headers, manifest body, layer body, token answer) one byte at a time ends
as `check-error`, exit 3, after about --timeout per attempt, on the production wire."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from shipsure import mediatypes as mt
from shipsure.cli.main import main
from shipsure.model import Digest
from shipsure.registry.mock_server import hostile_server
from shipsure.registry.mock_wire import Drip, MockAnswer
from shipsure.registry.wire import Request
from tests.checks.small_image import desc

REPO = "team/app"
LAYER = b"L" * 4096
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, CONFIG),
        "layers": [desc(mt.OCI_LAYER_GZIP, LAYER)],
    }
).encode()
OBJECTS = {
    f"/v2/{REPO}/manifests/v1": (MANIFEST, mt.OCI_MANIFEST),
    f"/v2/{REPO}/manifests/{Digest.of(MANIFEST)}": (MANIFEST, mt.OCI_MANIFEST),
    f"/v2/{REPO}/blobs/{Digest.of(CONFIG)}": (CONFIG, "application/octet-stream"),
    f"/v2/{REPO}/blobs/{Digest.of(LAYER)}": (LAYER, "application/octet-stream"),
}


def registry(
    drip_on: str | None = None, phase: Drip = "headers"
) -> Callable[[Request], MockAnswer]:
    """A registry serving one image; answers whose path ends with `drip_on` drip."""

    def handler(request: Request) -> MockAnswer:
        path = "/" + request.url.split("/", 3)[3].split("?")[0]
        found = OBJECTS.get(path)
        if found is None:
            return MockAnswer(404, body=b"404 page not found\n")
        body, media_type = found
        headers = [("Content-Type", media_type), ("Docker-Content-Digest", str(Digest.of(body)))]
        if drip_on is not None and path.endswith(drip_on):
            return MockAnswer(200, headers, body, pause=0.25, drip=phase)
        return MockAnswer(200, headers, body)

    return handler


def test_the_served_image_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    with hostile_server(registry()) as server:
        assert main(["verify", "--deep", "--timeout", "1", f"{server.host}/{REPO}:v1"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("drip_on", "phase", "deep"),
    [
        ("/manifests/v1", "status", False),  # the status line, a byte at a time
        ("/manifests/v1", "headers", False),  # the headers
        ("/manifests/v1", "body", False),  # the manifest body
        (str(Digest.of(LAYER)), "headers", False),  # a blob HEAD's headers
        (str(Digest.of(LAYER)), "body", True),  # a 4 KiB layer body under --deep
    ],
)
def test_a_dripping_answer_is_check_error_exit_3(
    drip_on: str, phase: Drip, deep: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with hostile_server(registry(drip_on, phase)) as server:
        args = ["verify", "--format", "json", "--timeout", "1"] + (["--deep"] if deep else [])
        code = main([*args, f"{server.host}/{REPO}:v1"])
        attempts = len([r for r in server.requests if r.url.endswith(drip_on)])
    out, _ = capsys.readouterr()
    findings = json.loads(out)["findings"]
    assert code == 3
    assert [f["kind"] for f in findings] == ["check-error"]
    assert "timed out" in findings[0]["message"]
    assert attempts == 4  # the first try and three retries, each ended by the deadline


def test_a_dripping_token_answer_is_check_error_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    serve = registry()

    def handler(request: Request) -> MockAnswer:
        if "/token" in request.url:
            return MockAnswer(200, [], b'{"token":"t"}', pause=0.25, drip="headers")
        if "authorization" not in {k.lower() for k, _ in request.headers}:
            realm = request.url.split("/v2/", 1)[0] + "/token"
            return MockAnswer(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="r"')])
        return serve(request)

    with hostile_server(handler) as server:
        code = main(["verify", "--format", "json", "--timeout", "1", f"{server.host}/{REPO}:v1"])
        tokens = len([r for r in server.requests if "/token" in r.url])
    out, _ = capsys.readouterr()
    assert code == 3
    assert [f["kind"] for f in json.loads(out)["findings"]] == ["check-error"]
    assert tokens == 4
