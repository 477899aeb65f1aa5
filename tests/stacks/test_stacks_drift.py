"""`shipsure stacks drift` with real Terraform: drift after editing state, one alert per
transition (posted to a local HTTP server), skipped stacks, undelivered alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import Recorder, make_tf_repo

from shipsure.cli.main import main
from shipsure.stacks import alerts
from shipsure.stacks.drift import transition
from shipsure.stacks.locks import open_backend


def edit_state_output(stack: Path, value: str) -> None:
    """Make the recorded state disagree with the code, as drift does."""
    path = stack / "terraform.tfstate"
    tfstate = json.loads(path.read_text())
    tfstate["outputs"]["greeting"]["value"] = value
    tfstate["serial"] += 1
    path.write_text(json.dumps(tfstate))


def test_drift_alerts_once_per_transition(
    tmp_path: Path,
    plugin_cache: Path,
    terraform_bin: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_tf_repo(tmp_path / "infra", ["s1", "s2"])
    lock_url = f"file://{repo}/.shipsure/locks"
    opts = ["--repo", str(repo), "--plugin-cache", str(plugin_cache), "--binary", terraform_bin]
    opts += ["--lock-url", lock_url]
    assert main(["stacks", "run", "apply", "--all", *opts]) == 0
    capsys.readouterr()

    def drift(webhook: str, *extra: str) -> tuple[int, dict[str, Any]]:
        code = main(["stacks", "drift", *opts, "--webhook", webhook, "--format", "json", *extra])
        return code, json.loads(capsys.readouterr().out)

    with Recorder() as hook:
        # First look: everything clean, nothing to say.
        code, body = drift(hook.url)
        assert code == 0
        assert [s["status"] for s in body["stacks"]] == ["clean", "clean"]
        assert hook.posts == []

        edit_state_output(repo / "stacks/s1", "hello drift")

        # The webhook is down: said on stderr, and the state is not saved...
        monkeypatch.setattr(alerts, "BACKOFF_SECONDS", 0.0)
        hook.status = 500
        code = main(["stacks", "drift", *opts, "--webhook", hook.url, "--format", "json"])
        captured = capsys.readouterr()
        assert code == 1  # drift found wins over "could not alert"
        assert json.loads(captured.out)["alert"] == {
            "sent": False,
            "kind": "generic",
            "error": "HTTP 500",
        }
        assert "drift alert not delivered (HTTP 500)" in captured.err
        assert len(hook.posts) == alerts.ATTEMPTS
        # ...so once it is back, the same transition is alerted.
        hook.status = 200
        hook.posts.clear()
        code, body = drift(hook.url)
        assert code == 1
        assert body["transitions"] == [
            {"path": "stacks/s1", "before": "clean", "after": "drifted", "kind": "drifted"}
        ]
        assert len(hook.posts) == 1
        assert hook.posts[0]["transitions"] == body["transitions"]

        # Still drifted: no new alert.
        code, body = drift(hook.url)
        assert code == 1
        assert len(hook.posts) == 1

        # s2's lock is held (an apply is running): skipped, status kept, no alert.
        backend = open_backend(lock_url)
        try:
            assert backend.acquire("stacks/s2", "an-apply", ttl=60) is not None
            code, body = drift(hook.url)
            statuses = {s["path"]: s["status"] for s in body["stacks"]}
            assert statuses == {"stacks/s1": "drifted", "stacks/s2": "skipped"}
            assert code == 1
            assert len(hook.posts) == 1
        finally:
            backend.force_break("stacks/s2")
            backend.close()

        # Repair s1 by applying: one "resolved" alert, as Slack text this time.
        assert main(["stacks", "run", "apply", "stacks/s1", *opts]) == 0
        capsys.readouterr()
        code, body = drift(hook.url, "--webhook-kind", "slack")
        assert code == 0
        assert [t["kind"] for t in body["transitions"]] == ["resolved"]
        assert len(hook.posts) == 2
        assert "`stacks/s1` resolved (was drifted)" in hook.posts[1]["text"]

    state = json.loads((repo / ".shipsure/state/drift.json").read_text())
    assert {p: e["status"] for p, e in state["stacks"].items()} == {
        "stacks/s1": "clean",
        "stacks/s2": "clean",
    }


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (None, "clean", None),
        (None, "drifted", "drifted"),
        (None, "error", "error"),
        ("clean", "drifted", "drifted"),
        ("drifted", "drifted", None),
        ("drifted", "clean", "resolved"),
        ("error", "clean", "resolved"),
        ("error", "error", None),
        ("clean", "error", "error"),
        ("drifted", "skipped", None),
    ],
)
def test_transition_rules(before: str | None, after: str, kind: str | None) -> None:
    found = transition("s", before, after)
    assert (found.kind if found else None) == kind


def test_webhook_kind_and_slack_payload() -> None:
    assert alerts.webhook_kind("https://hooks.slack.com/services/T/B/X", "auto") == "slack"
    assert alerts.webhook_kind("https://example.com/hook", "auto") == "generic"
    found = transition("live/app", "clean", "drifted")
    assert found is not None
    text = alerts.payload("slack", [found], "infra")["text"]
    assert text.startswith("shipsure drift (infra): 1 newly drifted, 0 resolved, 0 failing")
