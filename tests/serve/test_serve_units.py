"""serve's parts on their own: notification parsing, the push queue, the state file, the
config file. Pure or local (SQLite in a temporary folder); the registry tests are elsewhere."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from shipsure.cli.main import build_parser, main
from shipsure.cli.serve import apply_config, parse_listen, read_token
from shipsure.errors import BadInputError, UsageError
from shipsure.findings import Finding, Report, Severity
from shipsure.serve.events import (
    KIND_IMAGE,
    KIND_INDEX,
    NotificationError,
    PushEvent,
    parse_notification,
)
from shipsure.serve.pushqueue import PushJob, PushQueue
from shipsure.serve.store import BROKEN, HEALTHY, Store, report_from_dict
from tests.serve.page_helpers import page_of

ENVELOPE = "application/vnd.docker.distribution.events.v1+json"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _target(media_type: str, digest: str, tag: str | None = None, repo: str = "team/app") -> Any:
    kind = "manifests" if "manifest" in media_type or "index" in media_type else "blobs"
    target = {
        "mediaType": media_type,
        "digest": digest,
        "repository": repo,
        "url": f"http://r/v2/{repo}/{kind}/{digest}",
    }
    if tag:
        target["tag"] = tag
    return target


# --- events ------------------------------------------------------------------------------


def test_distribution_envelope_keeps_manifest_pushes_and_ignores_the_rest() -> None:
    body = _envelope(
        {"action": "push", "target": _target("application/octet-stream", D1)},
        {"action": "push", "target": _target("application/vnd.oci.image.manifest.v1+json", D2)},
        {
            "action": "push",
            "target": _target("application/vnd.oci.image.index.v1+json", D3, "latest"),
        },
        {"action": "pull", "target": _target("application/vnd.oci.image.manifest.v1+json", D2)},
        {"action": "delete", "target": _target("application/vnd.oci.image.manifest.v1+json", D2)},
    )
    parsed = parse_notification(ENVELOPE + "; charset=utf-8", body)
    assert parsed.ignored == 3
    assert [(p.digest, p.tag, p.kind) for p in parsed.pushes] == [
        (D2, None, KIND_IMAGE),
        (D3, "latest", KIND_INDEX),
    ]
    v3 = parse_notification("application/vnd.docker.distribution.events.v2+json", body)
    assert v3.pushes == parsed.pushes


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("text/plain", b"{}", 415, "Content-Type"),
        (None, b"{}", 415, "(none)"),
        (ENVELOPE, b"\xff\xfe", 400, "not JSON"),
        (ENVELOPE, b'{"events": {}}', 400, "events: not a list"),
        (ENVELOPE, b'{"events": [1]}', 400, "events[0]: not an object"),
        (ENVELOPE, b'{"events": [{"action": "push"}]}', 400, "events[0].target"),
        (ENVELOPE, b'{"events": [{"action": 7}]}', 422, "unknown event kind"),
        (
            ENVELOPE,
            b'{"events": [{"action": "push", "target": {"repository": "a", "digest": 1}}]}',
            400,
            "digest",
        ),
        ("application/json", b'{"type": "X", "event_data": {}}', 422, "unknown event kind"),
        ("application/json", b'{"type": "PUSH_ARTIFACT", "event_data": 1}', 400, "event_data"),
    ],
)
def test_bad_notifications_are_refused_whole(
    content_type: str | None, body: bytes, status: int, says: str
) -> None:
    with pytest.raises(NotificationError) as caught:
        parse_notification(content_type, body)
    assert caught.value.status == status
    assert says in str(caught.value)


def test_too_many_events_are_refused() -> None:
    event = {"action": "pull", "target": _target("application/octet-stream", D1)}
    with pytest.raises(NotificationError) as caught:
        parse_notification(ENVELOPE, _envelope(*[event] * 1001))
    assert caught.value.status == 413


def test_harbor_push_and_other_harbor_kinds() -> None:
    push = {
        "type": "PUSH_ARTIFACT",
        "event_data": {
            "resources": [{"digest": D1, "tag": "v1"}, {"digest": D1, "tag": "v2"}],
            "repository": {"repo_full_name": "library/app"},
        },
    }
    parsed = parse_notification("application/json", json.dumps(push).encode())
    assert [(p.repository, p.tag) for p in parsed.pushes] == [
        ("library/app", "v1"),
        ("library/app", "v2"),
    ]
    pull = {"type": "PULL_ARTIFACT", "event_data": {}}
    assert parse_notification("application/json", json.dumps(pull).encode()).ignored == 1


# --- the queue ---------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _push(digest: str, tag: str | None = None, kind: str = KIND_IMAGE) -> PushEvent:
    return PushEvent("team/app", digest, tag, kind, None, "distribution")


def test_queue_coalesces_per_digest_and_debounces_indexes() -> None:
    clock = _Clock()
    queue = PushQueue(index_debounce=2.0, clock=clock, monotonic=clock)
    assert queue.offer(_push(D1, "v1")) == "queued"
    assert queue.offer(_push(D1, "v2")) == "coalesced"
    assert queue.offer(_push(D2, "latest", KIND_INDEX)) == "queued"
    assert queue.offer(_push(D3)) == "queued"  # a child, by digest
    job = queue.take(timeout=0)
    assert job is not None and job.digest == D1 and job.tags == {"v1", "v2"}
    assert queue.take(timeout=0) is None  # the index waits for its debounce
    clock.now += 1.5
    assert queue.offer(_push(D2, "stable", KIND_INDEX)) == "coalesced"  # restarts the wait
    clock.now += 1.0
    assert queue.take(timeout=0) is None
    clock.now += 1.0
    index = queue.take(timeout=0)
    assert index is not None and index.digest == D2 and index.tags == {"latest", "stable"}
    # The index walk covered the child: it is coalesced, not walked again.
    queue.covered([("team/app", D3)], started=clock.now)
    clock.now += 10
    assert queue.take(timeout=0) is None
    assert (queue.counts.queued, queue.counts.coalesced, queue.counts.dropped) == (3, 3, 0)


def test_queue_is_bounded_and_counts_what_it_drops() -> None:
    clock = _Clock()
    queue = PushQueue(max_pending=2, clock=clock, monotonic=clock)
    assert [queue.offer(_push(d, "t")) for d in (D1, D2, D3)] == ["queued", "queued", "dropped"]
    assert queue.offer(_push(D1, "u")) == "coalesced"  # a waiting digest still coalesces
    assert queue.counts.dropped == 1
    left = queue.close()
    assert sorted(j.digest for j in left) == [D1, D2]
    assert queue.offer(_push(D3, "t")) == "dropped"


def test_queue_take_wakes_for_a_new_job() -> None:
    queue = PushQueue()
    got: list[PushJob | None] = []
    taker = threading.Thread(target=lambda: got.append(queue.take(timeout=30)))
    taker.start()
    queue.offer(_push(D1, "v1"))
    taker.join(30)
    assert got and got[0] is not None and got[0].digest == D1


# --- the state file ----------------------------------------------------------------------


def _finding(digest: str, tag: str = "v1", kind: str = "blob-missing") -> Finding:
    return Finding(
        kind=kind,
        severity=Severity.ERROR,
        message="gone",
        repository="team/app",
        reference=f"r/team/app:{tag}",
        digest=digest,
        path=(f"tag {tag}", f"layer 0 {digest}"),
    )


def _job(digest: str, *tags: str) -> PushJob:
    return PushJob("team/app", digest, set(tags), received=100.0, last_received=100.0)


def test_store_keeps_first_seen_across_reopen_and_resolves(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    broken = Report("serve")
    broken.add(_finding(D3))
    assert store.record_push(_job(D1, "v1"), broken, 100.0, 101.0) == BROKEN
    store.close()
    store = Store(path)  # a restart
    assert store.record_push(_job(D1, "v1"), broken, 200.0, 201.0) == BROKEN
    (open_finding,) = store.open_findings()
    assert (open_finding.first_seen, open_finding.last_seen) == (101.0, 201.0)
    tags, total = store.tag_states()
    assert total == 1 and tags[0].state == BROKEN and tags[0].since == 101.0
    # The same tree verified clean resolves it; the tag turns healthy from then.
    assert store.record_push(_job(D1, "v1"), Report("serve"), 300.0, 301.0) == HEALTHY
    assert store.open_findings() == []
    assert [f.resolved for f in store.resolved_findings()] == [301.0]
    assert store.tag_states()[0][0].since == 301.0
    # Back again: a new incident, with a new first-seen time.
    store.record_push(_job(D1, "v1"), broken, 400.0, 401.0)
    assert store.open_findings()[0].first_seen == 401.0
    store.close()


def test_store_resolves_nothing_when_the_walk_could_not_check(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    broken = Report("serve")
    broken.add(_finding(D3))
    store.record_push(_job(D1, "v1"), broken, 1.0, 2.0)
    unsure = Report("serve")
    unsure.add(Finding("check-error", Severity.WARNING, "could not check: 503"))
    assert store.record_push(_job(D1, "v1"), unsure, 3.0, 4.0) == "could not check"
    assert len(store.open_findings()) == 1


def test_store_records_a_probe_and_resolves_what_it_checked(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    first = Report("probe")
    first.add(_finding(D3))
    first.meta["probe"] = {
        "registry": "r",
        "shard": "0/1",
        "started_timestamp": 10.0,
        "finished_timestamp": 20.0,
        "complete": True,
        "catalog_accessible": True,
        "duration_seconds": 10.0,
        "unchecked": [],
        "remembered": {"team/app": {"clean": ["v2"], "unchecked": []}},
    }
    store.record_probe(first)
    states = {t.tag: t.state for t in store.tag_states()[0]}
    assert states == {"v1": BROKEN, "v2": HEALTHY}
    assert store.last_complete_probe() == 20.0
    again = report_from_dict(json.loads(json.dumps(first.to_dict())))
    again.findings.clear()
    again.meta["probe"].update(
        started_timestamp=30.0,
        finished_timestamp=40.0,
        remembered={"team/app": {"clean": ["v1"], "unchecked": []}},
    )
    store.record_probe(again)
    assert store.open_findings() == []
    assert {t.tag: t.state for t in store.tag_states()[0]} == {"v1": HEALTHY}  # v2 deleted
    report = store.last_probe_report()
    assert report is not None and report.meta["probe"]["finished_timestamp"] == 40.0


def test_a_probe_does_not_resolve_what_it_did_not_walk(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    broken = Report("serve")
    broken.add(_finding(D3))
    store.record_push(_job(D1), broken, 1.0, 2.0)  # pushed by digest: no tag
    probe = Report("probe")
    probe.meta["probe"] = {
        "started_timestamp": 10.0,
        "finished_timestamp": 20.0,
        "complete": True,
        "catalog_accessible": True,
        "unchecked": [],
        "remembered": {"team/app": {"clean": ["v1"], "unchecked": []}},
    }
    store.record_probe(probe)
    assert len(store.open_findings()) == 1
    assert store.record_push(_job(D1), Report("serve"), 30.0, 31.0) == HEALTHY
    assert store.open_findings() == []


def test_store_prunes_push_history_and_old_resolved_findings(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", max_pushes=5, resolved_retention=100.0)
    broken = Report("serve")
    for i in range(50):
        broken.findings[:] = [_finding(f"sha256:{i:064x}", tag=f"t{i}")]
        now = i * 10.0
        store.record_push(_job(D1, f"t{i}"), broken, now, now)
        store.record_push(_job(D1, f"t{i}"), Report("serve"), now + 1, now + 1)
    assert store.push_count() == 5
    assert len(store.resolved_findings(1000)) <= 11  # 100 s of 10 s steps


def test_page_search_escapes_like_wildcards(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.record_push(_job(D1, "v1_0"), Report("serve"), 1.0, 2.0)
    store.record_push(_job(D2, "v100"), Report("serve"), 1.0, 2.0)
    assert [t.tag for t in store.tag_states("v1_")[0]] == ["v1_0"]
    assert store.tag_states("%")[1] == 0


# --- the command line and its config file ------------------------------------------------


def _serve_args(*argv: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    args = build_parser("serve").parse_args(["serve", *argv])
    return args, args.serve_parser


def test_config_file_fills_options_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(
        "registry: registry.example.com\nlisten: 0.0.0.0:9000\nprobe-interval: 600\n"
        "push_check: head\nno-referrers: true\ninsecure: true\n"
    )
    args, parser = _serve_args("--config", str(config), "--probe-interval", "60")
    apply_config(args, parser)
    assert args.registry == "registry.example.com"
    assert args.listen == "0.0.0.0:9000"
    assert args.probe_interval == 60.0  # the flag wins
    assert args.push_check == "head"
    assert args.referrers is False
    assert args.insecure is True


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nope: 1\n", "unknown option 'nope'"),
        ("probe-interval: -5\n", "probe-interval"),
        ("push-check: maybe\n", "is not one of"),
        ("insecure: yes please\n", "true or false"),
        ("- a list\n", "not a mapping"),
        ("listen: [1, 2]\n", "single value"),
        ("a: [\n", "not YAML"),
    ],
)
def test_bad_config_files_are_named(tmp_path: Path, text: str, says: str) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(text)
    args, parser = _serve_args("--config", str(config), "r:5000")
    with pytest.raises(BadInputError, match=says):
        apply_config(args, parser)


def test_listen_and_token_file_are_checked(tmp_path: Path) -> None:
    assert parse_listen("[::]:8080") == ("::", 8080)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("8080", ":8080", "host:http", "host:70000"):
        with pytest.raises(UsageError):
            parse_listen(bad)
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert read_token(str(token)) == "abc"
    token.write_text("two words\n")
    with pytest.raises(BadInputError, match="one token"):
        read_token(str(token))
    with pytest.raises(BadInputError, match="missing"):
        read_token(str(tmp_path / "missing"))


def test_serve_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--state", str(tmp_path / "s.sqlite")]) == 2
    assert "needs REGISTRY" in capsys.readouterr().err
    assert main(["serve", "r:5000", "--listen", "nope"]) == 2
    missing = str(tmp_path / "none")
    assert main(["serve", "r:5000", "--notifications-token-file", missing]) == 2
    err = capsys.readouterr().err
    assert "--notifications-token-file" in err and "Traceback" not in err


# --- the page ----------------------------------------------------------------------------


def test_page_escapes_what_it_shows_and_says_when_it_shows_a_part() -> None:
    hostile = {
        "kind": "blob-missing",
        "severity": "error",
        "repository": "team/<script>alert(1)</script>",
        "message": "<img src=x onerror=alert(1)>",
        "path": ["tag <b>v1</b>"],
    }
    html = page_of(hostile, tags=("v1",), search='"><script>', total=600)
    assert "<img" not in html and "tag <b>" not in html and "tag &lt;b&gt;v1" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'value="&quot;&gt;&lt;script&gt;"' in html
    assert "Findings (1 of 600)" in html and "Showing the first 1" in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
