"""retain over a real registry's API, as users meet it.

- A registry that asks for credentials (htpasswd basic auth), on 2.8 and v3: credentials
  from docker's config.json, the plan changes nothing, --apply deletes what the policy drops
  (manifests by digest, a shared tag by a throw-away push), a second run plans nothing;
  refused or absent credentials are one line and exit 3, never the password.
- A token realm over plain HTTP, or a listing's `Link`, on another host gets no
  credentials; a web page is not read as a listing; a listing that loops, a body that
  never ends or drips are bounded.
- A registry with deletes disabled: every tag is left as it was, and the summary says the
  actions failed (exit 3); a tag pushed again since the plan: its action is refused and the
  run exits 1."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipsure import mediatypes as mt
from shipsure.cli.main import main
from shipsure.registry.mock_server import hostile_server
from shipsure.registry.mock_wire import MockAnswer
from shipsure.registry.wire import Request
from shipsure.sandbox import images
from shipsure.sandbox.registry import Flavour, SandboxRegistry, missing_reason, registry_available
from tests.conftest import HtpasswdRegistry

pytestmark = pytest.mark.both_registries


def _docker_config(folder: Path, host: str, username: str, password: str) -> Path:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder


def _tags(client: httpx.Client, repo: str) -> set[str]:
    got = client.get(f"/v2/{repo}/tags/list")
    if got.status_code == 404:
        return set()
    return set(got.json().get("tags") or [])


def _secrets(auth: HtpasswdRegistry) -> list[str]:
    pair = f"{auth.username}:{auth.password}".encode()
    return [auth.password, base64.b64encode(pair).decode()]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_retain_applies_over_basic_auth_and_a_second_run_plans_nothing(
    htpasswd_registry: HtpasswdRegistry,
    repo_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = htpasswd_registry.registry
    auth = (htpasswd_registry.username, htpasswd_registry.password)
    untagged = f"{repo_name}-untagged"
    with httpx.Client(base_url=registry.url, auth=auth, timeout=30) as client:
        images.push_index(registry.url, repo_name, "1.0.0", client=client)
        images.push_index(registry.url, repo_name, "1.1.0", client=client)
        # Same content as 1.1.0: `latest` is protected, so 1.1.0's manifest stays and
        # `alias` loses only its tag (a throw-away image pushed, then deleted: writes).
        images.push_index(
            registry.url, repo_name, "latest", seed=f"{repo_name}:1.1.0", client=client
        )
        images.push_index(
            registry.url, repo_name, "alias", seed=f"{repo_name}:1.1.0", client=client
        )
        images.push_image(registry.url, repo_name, "dev-1", client=client)
        # A repository in the catalog without any tag: its tags list answers NAME_UNKNOWN.
        images.push_image(registry.url, untagged, None, client=client)
        before = _tags(client, repo_name)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"policies:\n  - repositories: [{repo_name}]\n"
        "    keep: {semver: {per: major, newest: 1}}\n    protect: [latest]\n"
    )
    monkeypatch.setenv(
        "DOCKER_CONFIG", str(_docker_config(tmp_path / "docker", registry.host, *auth))
    )
    argv = ["retain", "--policy", str(policy), "--registry", registry.host]
    argv += ["--journal", str(tmp_path / "retain.jsonl")]

    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert "delete-manifest" in out and "delete-tag" in out, out
    with httpx.Client(base_url=registry.url, auth=auth, timeout=30) as client:
        assert _tags(client, repo_name) == before  # a plan changes nothing

    code, out, err = _run([*argv, "--apply"], capsys)
    assert code == 0, err + out
    with httpx.Client(base_url=registry.url, auth=auth, timeout=30) as client:
        assert _tags(client, repo_name) == {"1.1.0", "latest"}
    for text in (out, err):
        for secret in _secrets(htpasswd_registry):
            assert secret not in text
    for tag in ("1.1.0", "latest"):
        assert main(["verify", f"{registry.host}/{repo_name}:{tag}"]) == 0, tag
    capsys.readouterr()

    code, out, err = _run([*argv, "--apply", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["actions"] == []


def test_retain_names_refused_and_missing_credentials_in_one_line(
    htpasswd_registry: HtpasswdRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = htpasswd_registry.registry
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    monkeypatch.delenv("SHIPSURE_USERNAME", raising=False)
    monkeypatch.delenv("SHIPSURE_PASSWORD", raising=False)
    argv = ["retain", "--policy", str(policy), "--registry", registry.host, "--apply"]
    argv += ["--journal", str(tmp_path / "retain.jsonl")]

    code, out, err = _run(argv, capsys)
    assert code == 3
    assert err.count("\n") == 1 and "401" in err and "no credentials" in err, err

    wrong = "not-" + htpasswd_registry.password
    monkeypatch.setattr("sys.stdin", io.StringIO(wrong + "\n"))
    code, out, err = _run(
        [*argv, "--username", htpasswd_registry.username, "--password-stdin"], capsys
    )
    assert code == 3
    assert err.count("\n") == 1 and "credentials from --username refused" in err, err
    assert wrong not in out + err


def test_retain_apply_exits_1_when_the_registry_changed_since_the_plan(
    registry: SandboxRegistry,
    repo_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tag pushed again between the plan and its action: the action is refused and the
    new image kept. retain said so in its summary but exited 0, as if the plan had been
    carried out; a run that did less than it printed now exits 1 (run again to re-plan)."""
    from shipsure.retention import plan as retention_plan

    images.push_image(registry.url, repo_name, "1.0.0", seed=f"{repo_name}-one")
    images.push_image(registry.url, repo_name, "2.0.0", seed=f"{repo_name}-two")
    planned = retention_plan.plan_retention
    moved: list[str] = []

    def plan_then_push(*args: Any, **kwargs: Any) -> Any:
        made = planned(*args, **kwargs)
        pushed = images.push_image(registry.url, repo_name, "1.0.0", seed=f"{repo_name}-new")
        moved.append(pushed.digest)
        return made

    monkeypatch.setattr(retention_plan, "plan_retention", plan_then_push)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"policies:\n  - repositories: [{repo_name}]\n    keep: {{match: '2[.].*'}}\n"
    )
    argv = ["retain", "--policy", str(policy), "--registry", registry.host, "--apply"]
    argv += ["--repository", repo_name, "--journal", str(tmp_path / "j.jsonl")]
    code, out, err = _run(argv, capsys)
    assert code == 1, err + out
    assert f"tag 1.0.0 moved to {moved[0]} since the plan" in out, out
    assert "(actions: 1 refused)" in out, out
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        assert _tags(client, repo_name) == {"1.0.0", "2.0.0"}
        now = client.head(
            f"/v2/{repo_name}/manifests/1.0.0", headers={"Accept": mt.MANIFEST_ACCEPT}
        )
    assert now.headers["docker-content-digest"] == moved[0]


def test_retain_warns_about_a_named_repository_without_tags(
    htpasswd_registry: HtpasswdRegistry,
    repo_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = htpasswd_registry.registry
    auth = (htpasswd_registry.username, htpasswd_registry.password)
    with httpx.Client(base_url=registry.url, auth=auth, timeout=30) as client:
        images.push_image(registry.url, repo_name, None, client=client)
    monkeypatch.setenv(
        "DOCKER_CONFIG", str(_docker_config(tmp_path / "docker", registry.host, *auth))
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    named = ["--repository", repo_name, "--repository", f"{repo_name}-never-pushed"]
    code, _out, err = _run(
        ["retain", "--policy", str(policy), "--registry", registry.host, *named], capsys
    )
    assert code == 0, err
    assert f"repository {repo_name} has no tags" in err
    assert f"repository {repo_name}-never-pushed has no tags" in err


def test_retain_sends_no_password_to_a_plain_http_token_realm_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A loopback registry whose challenge names a token realm on another host over plain
    HTTP: the registry client refuses to send credentials there, and so does retain (it
    sent them: the password crossed the network in the clear). Served: no registry of ours
    points its realm elsewhere."""
    challenge = 'Bearer realm="http://token.example.invalid/token",service="registry"'

    def handler(_request: Request) -> MockAnswer:
        return MockAnswer(401, [("WWW-Authenticate", challenge)], b'{"errors":[]}')

    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("the-password\n"))
    with hostile_server(handler) as server:
        argv = ["retain", "--policy", str(policy), "--registry", server.host]
        code = main([*argv, "--username", "ci", "--password-stdin"])
    err = capsys.readouterr().err
    assert code == 3
    assert "over plain HTTP (token realm token.example.invalid)" in err, err
    assert "the-password" not in err


@pytest.mark.parametrize("flavour", ["2.8", "3"])
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("deletes disabled", "is storage.delete.enabled set?"),
        ("read-only", "allows only GET, HEAD: is it in read-only mode?"),
    ],
)
def test_retain_on_a_registry_refusing_deletes_leaves_every_tag_as_it_was(
    flavour: Flavour, mode: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry without storage.delete.enabled answers every DELETE 405 (UNSUPPORTED),
    one in read-only mode too (Allow: GET, HEAD). Dropping a tag whose manifest a kept tag
    shares pushed a throw-away image over it first, so the tag went on serving that
    throw-away image; and the summary said "2 deleted"."""
    if not registry_available(flavour):
        pytest.skip(missing_reason(flavour))
    root = tmp_path / "storage"
    root.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {match: '2[.]0[.]1'}\n")
    with SandboxRegistry(root, flavour=flavour) as registry:
        images.push_image(registry.url, "team/app", "1.0.0")
        shared = images.push_image(registry.url, "team/app", "2.0.0").digest
        images.push_image(registry.url, "team/app", "2.0.1", seed="team/app:2.0.0")
    storage = {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": False}}
    refusing = (
        SandboxRegistry(root, flavour=flavour, extra_config={"storage": storage})
        if mode == "deletes disabled"
        else SandboxRegistry(root, flavour=flavour, readonly=True)
    )
    with refusing as registry:
        argv = ["retain", "--policy", str(policy), "--registry", registry.host, "--apply"]
        code = main([*argv, "--journal", str(tmp_path / "retain.jsonl")])
        out = capsys.readouterr().out
        with httpx.Client(base_url=registry.url, timeout=30) as client:
            now = client.head(
                "/v2/team/app/manifests/2.0.0", headers={"Accept": mt.MANIFEST_ACCEPT}
            ).headers["docker-content-digest"]
            tags = _tags(client, "team/app")
    assert code == 3
    assert now == shared  # not a throw-away image
    assert tags == {"1.0.0", "2.0.0", "2.0.1"}
    assert "(actions: 2 failed)" in out and says in out, out


def test_retain_follows_no_link_to_another_host_and_reads_no_web_page_as_a_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Served answers no real registry gives: a catalog whose `Link` names another host
    (retain followed it with the Authorization header: the password went there), and a
    200 web page for the catalog (a traceback, exit 1)."""
    elsewhere: list[Request] = []

    def other_host(request: Request) -> MockAnswer:
        elsewhere.append(request)
        return MockAnswer(200, [("Content-Type", "application/json")], b'{"repositories":[]}')

    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    with hostile_server(other_host) as other:

        def registry(request: Request) -> MockAnswer:
            if not any(name.lower() == "authorization" for name, _ in request.headers):
                return MockAnswer(401, [("WWW-Authenticate", 'Basic realm="r"')], b"{}")
            link = f'<http://{other.host}/v2/_catalog?last=a&n=1000>; rel="next"'
            body = b'{"repositories":["a"]}'
            return MockAnswer(200, [("Content-Type", "application/json"), ("Link", link)], body)

        with hostile_server(registry) as server:
            monkeypatch.setattr("sys.stdin", io.StringIO("the-password\n"))
            argv = ["retain", "--policy", str(policy), "--registry", server.host]
            code = main([*argv, "--username", "ci", "--password-stdin"])
    err = capsys.readouterr().err
    assert code == 3
    assert "Link points to another host" in err, err
    assert elsewhere == []

    def web_page(_request: Request) -> MockAnswer:
        return MockAnswer(200, [("Content-Type", "text/html")], b"<html>hello</html>")

    with hostile_server(web_page) as server:
        code = main(["retain", "--policy", str(policy), "--registry", server.host])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and "not a registry's listing" in err, err


def test_retain_stops_on_a_listing_whose_next_page_loops_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Served: a catalog whose `Link` names itself. retain asked for it forever (a hang
    with growing memory); the registry client stops at a repeated page, and so does retain."""

    def looping(_request: Request) -> MockAnswer:
        link = '</v2/_catalog?n=1000>; rel="next"'
        headers = [("Content-Type", "application/json"), ("Link", link)]
        return MockAnswer(200, headers, b'{"repositories":["a"]}')

    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    with hostile_server(looping) as server:
        code = main(["retain", "--policy", str(policy), "--registry", server.host])
        asked = len(server.requests)
    err = capsys.readouterr().err
    assert code == 3 and "pagination does not end" in err, err
    assert asked <= 3  # the HTTPS check of a loopback host, the page, and no more


def _listing_then(manifest: MockAnswer) -> Callable[[Request], MockAnswer]:
    """A registry listing one repository with one tag, whose manifest is `manifest`."""
    json_type = [("Content-Type", "application/json")]

    def handler(request: Request) -> MockAnswer:
        if "/_catalog" in request.url:
            return MockAnswer(200, json_type, b'{"repositories":["a"]}')
        if request.url.endswith("/tags/list"):
            return MockAnswer(200, json_type, b'{"name":"a","tags":["v1"]}')
        if "/manifests/" in request.url:
            return manifest
        return MockAnswer(200, json_type, b"{}")

    return handler


def _endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 65536


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (MockAnswer(200, [("Content-Type", mt.OCI_MANIFEST)], _endless()), "byte limit"),
        (
            MockAnswer(200, [("Content-Type", mt.OCI_MANIFEST)], [b"{"] * 100, pause=0.3),
            "timed out reading the body",
        ),
    ],
    ids=["endless", "dripping"],
)
def test_retain_bounds_every_answer_it_reads(
    answer: MockAnswer, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Served: a manifest whose body never ends, and one sent a piece every 0.3 s. retain
    read bodies whole (memory without bound, or a wait as long as the server liked); now
    each kind of answer has a size cap and the whole read a deadline, as in verify."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {newest: 1}\n")
    with hostile_server(_listing_then(answer)) as server:
        argv = ["retain", "--policy", str(policy), "--registry", server.host, "--timeout", "1"]
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 3 and says in err, err


def test_retain_never_deletes_by_a_digest_the_bytes_do_not_carry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Served: a manifest whose Docker-Content-Digest names other bytes (a broken proxy).
    retain planned a DELETE of that digest, some other manifest; verify calls it
    digest-header-mismatch, and retain now stops before planning anything."""
    manifest = b'{"schemaVersion":2,"mediaType":"' + mt.OCI_MANIFEST.encode() + b'"}'
    other = "sha256:" + "e" * 64
    headers = [("Content-Type", mt.OCI_MANIFEST), ("Docker-Content-Digest", other)]
    deletes: list[Request] = []
    handler = _listing_then(MockAnswer(200, headers, manifest))

    def recording(request: Request) -> MockAnswer:
        if request.method == "DELETE":
            deletes.append(request)
        return handler(request)

    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  - keep: {match: nothing}\n")
    with hostile_server(recording) as server:
        argv = ["retain", "--policy", str(policy), "--registry", server.host, "--apply"]
        code = main([*argv, "--journal", str(tmp_path / "j.jsonl")])
    err = capsys.readouterr().err
    assert code == 3 and "disagrees with the bytes" in err, err
    assert [r.url for r in deletes if other in r.url] == []
