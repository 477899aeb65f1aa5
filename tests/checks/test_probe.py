"""`shipsure probe` against a real registry (Debian's distribution 2.8) with every
HTTP-visible fault of registry-facts §4 injected, its repositories over several catalog
pages: each fault once, with the right repository and digest, nothing on clean content."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from shipsure.checks.probe import ProbeOptions, probe
from shipsure.cli.main import main
from shipsure.registry import open_registry
from shipsure.registry.retry import RetryPolicy
from shipsure.sandbox import faults
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate

Key = tuple[str, str | None, str | None]


def _inject(root: Path, tree: SyntheticStorage) -> tuple[set[Key], Key]:
    """One fault per repository (0..7); repository 8 stays clean. Returns the findings a
    default probe must give, and the one only --deep can see (same-size corrupted layer)."""
    repos = tree.repositories
    t = tree.tag
    expected: set[Key] = set()
    layer = t(repos[0], "v0").children[0].layers[-1]
    faults.remove_blob_data(root, layer)
    expected.add(("blob-missing", repos[0], layer))
    linked = t(repos[1], "v0").children[0].layers[-1]
    faults.remove_layer_link(root, repos[1], linked)
    expected.add(("blob-missing", repos[1], linked))
    child = t(repos[2], "v0").children[1].digest
    faults.remove_manifest_data(root, child)
    expected.add(("manifest-missing", repos[2], child))
    unlinked = t(repos[3], "v1").children[0].digest
    faults.remove_revision_link(root, repos[3], unlinked)
    expected.add(("manifest-missing", repos[3], unlinked))
    faults.dangle_tag(root, repos[4], "v0")
    expected.add(("tag-not-found", repos[4], None))
    config = t(repos[5], "v1").children[1].config
    faults.remove_blob_data(root, config)
    expected.add(("blob-missing", repos[5], config))
    corrupted = t(repos[6], "v0").children[0].layers[-1]
    faults.corrupt_blob(root, corrupted)
    bad_child = t(repos[7], "v1").children[0].digest
    faults.corrupt_manifest(root, bad_child)
    expected.add(("manifest-digest-mismatch", repos[7], bad_child))
    return expected, ("blob-digest-mismatch", repos[6], corrupted)


def _keys(doc: dict[str, Any]) -> list[Key]:
    return [
        (f["kind"], f["repository"], f["digest"])
        for f in doc["findings"]
        if f["kind"] != "check-error"
    ]


def _probe_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["probe", "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.slow
def test_probe_reports_each_fault_once_across_catalog_pages(
    fresh_registry: SandboxRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = fresh_registry.root
    tree = generate(root, SyntheticSpec(repositories=9, tags=2, platforms=2, layers=2))
    # A copy of the data we remove, to repair one fault later.
    layer = tree.tag(tree.repositories[0], "v0").children[0].layers[-1]
    saved = faults.blob_data_path(root, layer).read_bytes()
    expected, deep_only = _inject(root, tree)
    state = tmp_path / "probe-state.json"

    # Page size 2: the 9 repositories come over 5 catalog pages.
    code, doc = _probe_json(capsys, "--page-size", "2", "--state", str(state), fresh_registry.host)
    assert code == 1
    found = _keys(doc)
    assert sorted(found, key=str) == sorted(expected, key=str)  # each once, nothing else
    assert not [f for f in doc["findings"] if f["kind"] == "check-error"]
    dangling = next(f for f in doc["findings"] if f["kind"] == "tag-not-found")
    assert dangling["reference"].endswith(f"{tree.repositories[4]}:v0")
    probe_meta = doc["probe"]
    assert probe_meta["complete"] is True
    assert probe_meta["repositories"] == 9
    assert probe_meta["tags"] == probe_meta["tags_checked"] == 18
    assert {f["change"] for f in doc["findings"]} == {"new"}
    assert probe_meta["state"]["runs"] == 1

    code, deep = _probe_json(capsys, "--deep", fresh_registry.host)
    assert sorted(_keys(deep), key=str) == sorted(expected | {deep_only}, key=str)

    # Repair one fault, add another: the next run says what is new and what recovered.
    faults.write_atomically(faults.blob_data_path(root, layer), saved)
    new_config = tree.tag(tree.repositories[8], "v0").children[0].config
    faults.remove_blob_data(root, new_config)
    code, again = _probe_json(capsys, "--state", str(state), fresh_registry.host)
    changes = {(f["kind"], f["repository"], f["digest"]): f["change"] for f in again["findings"]}
    assert changes[("blob-missing", tree.repositories[8], new_config)] == "new"
    assert (
        changes[
            (
                "manifest-missing",
                tree.repositories[2],
                next(iter(k[2] for k in expected if k[1] == tree.repositories[2])),
            )
        ]
        == "ongoing"
    )
    assert ("blob-missing", tree.repositories[0], layer) not in changes
    recovered = again["probe"]["state"]["recovered"]
    assert [(r["kind"], r["repository"], r["digest"]) for r in recovered] == [
        ("blob-missing", tree.repositories[0], layer)
    ]
    assert again["probe"]["state"]["new"] == 1

    # Text says the same for people; the metrics carry the states.
    assert main(["probe", "--state", str(state), fresh_registry.host]) == 1
    text = capsys.readouterr().out
    assert "complete" in text and "since " in text
    assert main(["probe", "--format", "prometheus", fresh_registry.host]) == 1
    metrics = capsys.readouterr().out
    for name in (
        "shipsure_probe_catalog_accessible",
        "shipsure_probe_auth_accepted",
        "shipsure_probe_coverage_ratio",
        "shipsure_probe_last_complete_run_timestamp_seconds",
    ):
        assert f"\n{name}{{" in metrics
    assert (
        f'shipsure_probe_findings{{kind="manifest-digest-mismatch",registry="{fresh_registry.host}",'
        f'repository="{tree.repositories[7]}",severity="error",shard="0/1"}} 1.0'
    ) in metrics


@pytest.mark.slow
def test_sharded_probes_merged_equal_one_probe(
    fresh_registry: SandboxRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tree = generate(fresh_registry.root, SyntheticSpec(repositories=9, tags=2, platforms=2))
    expected, _ = _inject(fresh_registry.root, tree)
    _, whole = _probe_json(capsys, fresh_registry.host)
    assert set(_keys(whole)) == expected
    parts = []
    owned: list[int] = []
    for i in range(3):
        _, doc = _probe_json(capsys, "--shard", f"{i}/3", fresh_registry.host)
        owned.append(doc["probe"]["repositories"])
        part = tmp_path / f"part-{i}.json"
        part.write_text(json.dumps(doc))
        parts.append(str(part))
    assert sum(owned) == 9
    assert main(["report", "merge", "--format", "json", *parts]) == 1
    merged = json.loads(capsys.readouterr().out)
    assert sorted(_keys(merged), key=str) == sorted(_keys(whole), key=str)
    assert merged["probe"]["tags_checked"] == 18 and merged["probe"]["complete"] is True
    assert main(["report", "merge", "--format", "prometheus", *parts]) == 1
    assert 'shard="merged 3"' in capsys.readouterr().out
    assert main(["report", "merge", *parts[:2]]) == 2
    assert "2/3 missing" in capsys.readouterr().err


@pytest.mark.slow
def test_registry_stopped_and_restarted_mid_run_gives_no_integrity_finding(
    fresh_registry: SandboxRegistry,
) -> None:
    generate(fresh_registry.root, SyntheticSpec(repositories=8, tags=2, platforms=2))
    calls = []

    def progress(text: str) -> None:
        calls.append(text)
        if len(calls) == 1:
            fresh_registry.stop()  # down after the first batch ...
        elif len(calls) == 3:
            fresh_registry.start()  # ... and back, on the same port and storage

    policy = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02)
    with open_registry(fresh_registry.host, retries=policy, concurrency=4) as registry:
        report = probe(
            registry, ProbeOptions(batch_tags=4, workers=4, page_size=3), on_progress=progress
        )
    meta = report.meta["probe"]
    assert report.problems == []
    assert report.check_errors
    assert meta["complete"] is False
    assert 0 < meta["tags_checked"] < 16
    assert meta["unchecked"]
    assert int(report.exit_code()) == 3


V3_REGISTRY = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "registry"


@pytest.mark.slow
@pytest.mark.skipif(
    not V3_REGISTRY.is_file(), reason="needs distribution v3 in .tools/bin (scripts/peers.sh)"
)
def test_probe_reports_the_same_faults_on_distribution_v3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"
    tree = generate(root, SyntheticSpec(repositories=9, tags=2, platforms=2, layers=2))
    expected, deep_only = _inject(root, tree)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.pop("AWS_CA_BUNDLE", None)
    process = subprocess.Popen(
        [str(V3_REGISTRY), "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        host = f"127.0.0.1:{port}"
        code, doc = _probe_json(capsys, "--deep", "--page-size", "2", host)
        assert code == 1
        assert sorted(_keys(doc), key=str) == sorted(expected | {deep_only}, key=str)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("hour", [7, 8])  # the first run once took the hour's bucket
def test_deep_sample_finds_corruption_within_its_rotation_and_keeps_it(
    hour: int,
    fresh_registry: SandboxRegistry,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shipsure.cli.probe._clock", lambda: hour * 3600.0 + 5)
    tree = generate(fresh_registry.root, SyntheticSpec(repositories=2, tags=2, platforms=2))
    corrupted = tree.tag(tree.repositories[1], "v1").children[0].layers[-1]
    faults.corrupt_blob(fresh_registry.root, corrupted)
    state = str(tmp_path / "state.json")
    seen = []
    for _ in range(4):  # 50 %: every blob is re-hashed within 2 runs
        _, doc = _probe_json(capsys, "--deep-sample", "50", "--state", state, fresh_registry.host)
        assert doc["probe"]["deep_sample_rotation_runs"] == 2
        assert doc["probe"]["state"]["recovered"] == []
        seen.append(("blob-digest-mismatch", tree.repositories[1], corrupted) in _keys(doc))
    first = seen.index(True)
    assert first < 2
    assert all(seen[first:])  # once found, re-hashed on every run: never falsely recovered
