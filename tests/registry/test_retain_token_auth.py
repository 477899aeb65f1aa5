"""retain over the API of a registry with distribution's token auth (the bearer flow the
registry client also speaks): tags are read, a manifest is deleted by digest, and a tag that
shares its manifest is dropped by a throw-away push, each request with a token of its scope."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from shipsure.cli.main import main
from shipsure.sandbox import images

from .conftest import USERS, TokenAuthRegistry

REPO = "t/retain-token"
PASSWORD = USERS["alice"]


def test_retain_applies_with_bearer_tokens(
    token_registry: TokenAuthRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = token_registry.tokens.mint("alice", [f"repository:{REPO}:pull,push,delete"])
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=token_registry.url, headers=auth, timeout=30) as client:
        images.push_image(token_registry.url, REPO, "1.0.0", client=client)
        images.push_image(token_registry.url, REPO, "2.0.0", client=client)
        images.push_image(token_registry.url, REPO, "alias", seed=f"{REPO}:2.0.0", client=client)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"policies:\n  - repositories: [{REPO}]\n    keep: {{match: '2[.].*'}}\n")
    argv = ["retain", "--policy", str(policy), "--registry", token_registry.host]
    argv += ["--repository", REPO, "--journal", str(tmp_path / "j.jsonl")]
    argv += ["--username", "alice", "--password-stdin", "--format", "json"]
    for run in range(2):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        code = main([*argv, "--apply"])
        out, err = capsys.readouterr()
        assert code == 0, err
        doc = json.loads(out)
        done = sorted(o["op"] for o in doc["outcomes"] if o["result"] == "done")
        assert done == ([] if run else ["delete-manifest", "delete-tag"]), doc["outcomes"]
        assert PASSWORD not in out + err
    with httpx.Client(base_url=token_registry.url, headers=auth, timeout=30) as client:
        assert set(client.get(f"/v2/{REPO}/tags/list").json()["tags"]) == {"2.0.0"}
