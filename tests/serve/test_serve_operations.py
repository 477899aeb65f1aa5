"""serve's operations on a real registry: bad notifications change nothing, a restart keeps
"since when" and hands queued pushes over, the scheduled probe finds what no event showed."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import TOKEN, ServeProcess, free_port, notifications_config, wait_until

from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry, missing_reason, registry_available

ENVELOPE = "application/vnd.docker.distribution.events.v1+json"
GOOD = {"Authorization": f"Bearer {TOKEN}", "Content-Type": ENVELOPE}


def _event(repository: str, digest: str, tag: str | None, action: str = "push") -> dict[str, Any]:
    target: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "repository": repository,
        "url": f"http://registry.invalid/v2/{repository}/manifests/{digest}",
    }
    if tag:
        target["tag"] = tag
    return {"id": "1", "timestamp": "2026-01-01T00:00:00Z", "action": action, "target": target}


def _state(serve: Any) -> tuple[Any, ...]:
    """Everything a notification could change, as serve shows it."""
    metrics = serve.metrics()
    events = sorted(line for line in metrics.splitlines() if "shipsure_serve_events_total{" in line)
    return (
        tuple(events),
        json.dumps(serve.findings()),
        [line for line in metrics.splitlines() if line.startswith("shipsure_serve_tags{")],
        [line for line in metrics.splitlines() if "push_verifications_total{" in line],
    )


def _huge_post(port: int, size: int) -> tuple[int, bytes]:
    """POST a `size`-byte body in 1 MiB pieces (never held whole); return the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("POST", "/notifications")
    for key, value in GOOD.items():
        connection.putheader(key, value)
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    piece = b"x" * (1024 * 1024)
    try:
        for _ in range(size // len(piece)):
            connection.send(piece)
    except OSError:
        pass  # serve answered and closed without reading the rest: expected
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


@pytest.mark.parametrize("registry_flavour", ["2.8"], indirect=True)
def test_bad_notifications_get_a_clear_4xx_and_change_nothing(
    watched_factory: Any, repo_name: str
) -> None:
    watched = watched_factory(serve_args=("--probe-interval", "0"))
    registry, serve = watched.registry, watched.serve
    image = images.push_image(registry.url, repo_name, "v1")
    wait_until(lambda: "<b>v1</b>" in serve.get("/").text, what="the real push to be verified")
    before = _state(serve)
    url = f"{serve.url}/notifications"
    good_body = json.dumps({"events": [_event(repo_name, image.digest, "v2")]})
    cases: list[tuple[str, dict[str, str], bytes, int, str]] = [
        ("no secret", {"Content-Type": ENVELOPE}, good_body.encode(), 401, "shared secret"),
        (
            "wrong secret",
            {**GOOD, "Authorization": "Bearer not-the-token"},
            good_body.encode(),
            401,
            "shared secret",
        ),
        (
            "secret as a prefix",
            {**GOOD, "Authorization": f"Bearer {TOKEN}x"},
            good_body.encode(),
            401,
            "shared secret",
        ),
        ("invalid JSON", GOOD, b'{"events": [', 400, "not JSON"),
        ("not an object", GOOD, b"[1, 2]", 400, "not a JSON object"),
        (
            "unknown event kind",
            GOOD,
            json.dumps(
                {"events": [_event(repo_name, image.digest, "v2", action="rename")]}
            ).encode(),
            422,
            "unknown event kind 'rename'",
        ),
        (
            "unknown Harbor kind",
            {**GOOD, "Content-Type": "application/json"},
            json.dumps({"type": "PUSH_SOMETHING", "event_data": {}}).encode(),
            422,
            "unknown event kind",
        ),
        (
            "one bad event in a good envelope",
            GOOD,
            json.dumps(
                {
                    "events": [
                        _event(repo_name, image.digest, "v2"),
                        _event("UPPER/case", image.digest, "v2"),
                    ]
                }
            ).encode(),
            400,
            "events[1]",
        ),
        (
            "bad digest",
            GOOD,
            json.dumps({"events": [_event(repo_name, "sha256:abc", "v2")]}).encode(),
            400,
            "not a valid repository, tag and digest",
        ),
        ("unknown shape", GOOD, b'{"hello": "world"}', 422, "not a notification"),
        ("wrong content type", {**GOOD, "Content-Type": "text/plain"}, b"{}", 415, "Content-Type"),
    ]
    for name, headers, body, status, says in cases:
        answer = httpx.post(url, headers=headers, content=body, timeout=10)
        assert answer.status_code == status, name
        assert says in answer.json()["error"], name
    chunked = httpx.post(url, headers=GOOD, content=iter([good_body.encode()]), timeout=10)
    assert chunked.status_code == 411
    status, body = _huge_post(serve.port, 100 * 1024 * 1024)
    assert status == 413
    assert b"larger than the 1048576 allowed" in body
    # Nothing changed: no event counted, no push queued or verified, no finding, no tag.
    assert _state(serve) == before
    assert "v2" not in serve.get("/").text
    # The endpoint still works: the same body with the secret is taken.
    taken = httpx.post(url, headers=GOOD, content=good_body.encode(), timeout=10)
    assert taken.status_code == 202
    assert taken.json() == {"queued": 1, "coalesced": 0, "dropped": 0, "ignored": 0}


@pytest.mark.parametrize("registry_flavour", ["2.8"], indirect=True)
def test_harbor_push_webhook_is_verified(watched_factory: Any, repo_name: str) -> None:
    watched = watched_factory(serve_args=("--probe-interval", "0"))
    registry, serve = watched.registry, watched.serve
    image = images.push_image(registry.url, repo_name, "harbor")
    webhook = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1700000000,
        "operator": "admin",
        "event_data": {
            "resources": [{"digest": image.digest, "tag": "harbor", "resource_url": "x"}],
            "repository": {"name": "app", "namespace": "t", "repo_full_name": repo_name},
        },
    }
    answer = httpx.post(
        f"{serve.url}/notifications",
        headers={"Authorization": TOKEN, "Content-Type": "application/json"},
        json=webhook,
        timeout=10,
    )
    assert answer.status_code == 202
    assert answer.json()["coalesced"] + answer.json()["queued"] == 1
    wait_until(
        lambda: (
            serve.get("/api/findings").status_code == 200 and "<b>harbor</b>" in serve.get("/").text
        ),
        what="the Harbor push to be verified",
    )
    assert serve.findings() == []


@pytest.mark.parametrize("registry_flavour", ["2.8"], indirect=True)
def test_restart_keeps_since_when_and_queued_pushes(watched_factory: Any, repo_name: str) -> None:
    # A long index debounce keeps the index queued when serve is stopped.
    watched = watched_factory(serve_args=("--probe-interval", "0", "--index-debounce", "600"))
    registry, serve = watched.registry, watched.serve
    v1 = images.push_image(registry.url, repo_name, "v1")
    wait_until(lambda: "<b>v1</b>" in serve.get("/").text, what="v1 to be verified")
    faults.remove_blob_data(registry.root, v1.layer_digests[0])
    images.push_image(registry.url, repo_name, "v2", shared_layers=[f"{repo_name}:v1/0"])
    first = wait_until(lambda: serve.findings(), what="the broken push to be found")
    index = images.push_index(registry.url, repo_name, "multi")

    def index_queued() -> bool:
        # The index and its three children (pushed by digest) wait for the debounce.
        return f'shipsure_serve_queue_pending{{registry="{registry.host}"}} 4.0' in serve.metrics()

    wait_until(index_queued, what="the index event to be queued")
    page_before = serve.get("/").text
    assert serve.stop() == 0
    log = serve.log()
    assert '"pushes_saved_for_next_start": 4' in log
    assert TOKEN not in log  # the shared secret is never logged
    serve.extra = ["--probe-interval", "0", "--index-debounce", "0.2"]
    serve.start()
    again = serve.findings()
    assert [f["first_seen"] for f in again] == [f["first_seen"] for f in first]
    assert again[0]["first_seen_timestamp"] == first[0]["first_seen_timestamp"]
    since = first[0]["first_seen"].replace("T", " ")
    assert since in page_before and since in serve.get("/").text
    # The index queued before the stop is verified after the start.
    wait_until(lambda: "<b>multi</b>" in serve.get("/").text, what="the saved index")
    assert index.digest[:19] in serve.get("/", params={"q": "multi"}).text
    assert len(serve.findings()) == 1


@pytest.mark.parametrize("registry_flavour", ["2.8"], indirect=True)
def test_scheduled_probe_finds_what_no_event_showed(watched_factory: Any, repo_name: str) -> None:
    watched = watched_factory(blob_cache=False, serve_args=("--probe-interval", "2"))
    registry, serve = watched.registry, watched.serve
    # Not ready until a probe completed; the first probe runs at start.
    wait_until(lambda: serve.get("/readyz").status_code == 200, what="the first probe")
    assert "last complete probe" in serve.get("/readyz").text
    image = images.push_image(registry.url, repo_name, "v1")
    wait_until(lambda: "<b>v1</b>" in serve.get("/").text, what="v1 to be verified")
    assert serve.findings() == []
    faults.remove_blob_data(registry.root, image.config_digest)  # no event says so
    found = wait_until(serve.findings, what="a probe to find the lost config")
    assert found[0]["seen_by"] == "probe"
    assert found[0]["kind"] == "blob-missing"
    assert found[0]["tags"] == ["v1"]
    assert found[0]["path"][0] == "tag v1"
    metrics = serve.metrics()
    assert "shipsure_probe_complete{" in metrics  # the probe's own metric families
    assert "shipsure_probe_last_complete_run_timestamp_seconds{" in metrics
    assert f'kind="blob-missing",registry="{registry.host}",repository="{repo_name}"' in metrics
    assert serve.get("/healthz").text == "ok\n"
    assert serve.get("/nowhere").status_code == 404
    assert httpx.get(f"{serve.url}/notifications", timeout=5).status_code == 405
    # A scrape, the page and the API answer from serve's state alone: with the registry
    # gone they still show the same.
    registry.stop()
    still = serve.metrics()
    assert f'kind="blob-missing",registry="{registry.host}",repository="{repo_name}"' in still
    # Probes that cannot reach the registry resolve nothing.
    assert [f["digest"] for f in serve.findings()] == [found[0]["digest"]]
    assert "<b>v1</b>" in serve.get("/").text


def test_listen_address_in_use_exits_3(tmp_path: Any) -> None:
    from shipsure.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(
            [
                "serve",
                "127.0.0.1:1",
                "--listen",
                f"127.0.0.1:{port}",
                "--state",
                str(tmp_path / "s.sqlite"),
            ]
        )
    assert code == 3


def test_credentials_never_show_in_logs_pages_or_metrics(tmp_path: Path, repo_name: str) -> None:
    """A registry with htpasswd auth: serve logs in with --password-stdin, verifies pushes,
    and its logs (debug), page, API and metrics never hold the password or the secret."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        pytest.skip("needs htpasswd (Debian package apache2-utils; scripts/setup.sh)")
    if not registry_available("2.8"):
        pytest.skip(missing_reason("2.8"))
    password = "pw-" + "q7Zx" * 6
    users = tmp_path / "htpasswd"
    subprocess.run([htpasswd, "-Bbc", str(users), "ci", password], check=True, capture_output=True)
    port = free_port()
    auth = {"htpasswd": {"realm": "shipsure-test", "path": str(users)}}
    with SandboxRegistry(
        blob_cache="inmemory",
        extra_config={"auth": auth, "notifications": notifications_config(port)},
    ) as registry:
        serve = ServeProcess(
            registry.host,
            port,
            tmp_path / "state.sqlite",
            tmp_path,
            extra=["--probe-interval", "0", "--log-level", "debug"],
            stdin_text=password + "\n",
        )
        serve.extra += ["--username", "ci", "--password-stdin"]
        serve.start()
        try:
            with httpx.Client(base_url=registry.url, auth=("ci", password), timeout=30) as http:
                v1 = images.push_image(registry.url, repo_name, "v1", client=http)
                wait_until(lambda: "<b>v1</b>" in serve.get("/").text, what="v1 verified")
                faults.remove_blob_data(registry.root, v1.layer_digests[0])
                images.push_image(
                    registry.url, repo_name, "v2", shared_layers=[f"{repo_name}:v1/0"], client=http
                )
            wait_until(serve.findings, what="the broken push, verified with credentials")
            shown = [
                serve.get("/").text,
                serve.get("/api/findings").text,
                serve.metrics(),
                serve.get("/readyz").text,
            ]
        finally:
            serve.stop()
        log = serve.log_path.read_text() if serve.log_path else ""
    assert '"outcome": "broken"' in log
    for text in [*shown, log]:
        assert password not in text
        assert TOKEN not in text
        assert base64.b64encode(f"ci:{password}".encode()).decode() not in text
