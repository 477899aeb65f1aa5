"""Files `shipsure probe` and `shipsure report merge` read, hand-edited or damaged: each is
a one-line error naming the file and what is wrong (exit 2), before any registry is
walked; never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shipsure.cli.main import main

# Nothing listens here: a state or report problem must be found before connecting.
NOWHERE = "127.0.0.1:9"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _state(**finding: Any) -> dict[str, Any]:
    entry = {"kind": "blob-missing", "repository": "a", "digest": None, "tags": ["v1"]}
    entry |= {"first_seen": 1.0, "last_seen": 2.0} | finding
    return {
        "version": 1,
        "registry": NOWHERE,
        "shard": "0/1",
        "runs": 3,
        "findings": {"blob-missing a sha256:x": entry},
        "states": {},
    }


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"first_seen": "yesterday"}, "first_seen is not a time in Unix seconds"),
        ({"last_seen": None}, "last_seen is not a time in Unix seconds"),
        ({"first_seen": True}, "first_seen is not a time in Unix seconds"),
        ({"kind": 3}, "kind is not a string"),
        ({"repository": ["a"]}, "repository is not a string"),
        ({"tags": "v1"}, "tags is not a list of strings"),
    ],
)
def test_state_entry_of_the_wrong_shape(
    entry: dict[str, Any], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(_state(**entry)))
    code, out, err = _run(capsys, "probe", "--state", str(path), NOWHERE)
    assert (code, out) == (2, "")
    assert err == f"shipsure: --state {path}: finding 'blob-missing a sha256:x': {why}\n"


def test_state_nested_too_deep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "probe.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = _run(capsys, "probe", "--state", str(path), NOWHERE)
    assert code == 2
    assert err == f"shipsure: --state {path}: not a probe state file (not JSON)\n"


def _report(index: int, **changes: Any) -> dict[str, Any]:
    probe = {
        "registry": "reg:5000",
        "shard": f"{index}/2",
        "started_timestamp": 10.0,
        "finished_timestamp": 20.0,
        "complete": True,
        "catalog_accessible": True,
        "auth_accepted": True,
        "repositories": 1,
        "repositories_unchecked": 0,
        "tags": 2,
        "tags_checked": 2,
        "unchecked": [],
        "requests": {"GET": 4},
        "repository_globs_unmatched": [],
        "repositories_unknown": [],
        "state": {},
    }
    doc: dict[str, Any] = {
        "command": "probe",
        "checked": {"manifests": 2},
        "probe": probe,
        "findings": [],
    }
    for key, value in changes.items():
        if key in probe:
            probe[key] = value
        else:
            doc[key] = value
    return doc


def _write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def test_merge_of_good_probe_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path, "a.json", _report(0, repository_globs_unmatched=["tem/*", "x"]))
    # Without the catalog, only the shard owning a --repo name asks for it.
    unknown = _report(1, repository_globs_unmatched=["tem/*"], repositories_unknown=["team/x"])
    b = _write(tmp_path, "b.json", unknown)
    code, out, _ = _run(capsys, "report", "merge", "--format", "json", a, b)
    assert code == 0
    merged = json.loads(out)["probe"]
    assert merged["tags_checked"] == 4
    assert merged["repository_globs_unmatched"] == ["tem/*"]
    assert merged["repositories_unknown"] == ["team/x"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"checked": 5}, "checked is not an object of counts"),
        ({"findings": {"a": 1}}, "findings is not a list"),
        ({"requests": {"GET": "many"}}, "probe.requests is not an object of counts"),
        ({"requests": [1]}, "probe.requests is not an object of counts"),
        ({"tags": "2"}, "probe.tags is not a count"),
        ({"tags_checked": -1}, "probe.tags_checked is not a count"),
        ({"started_timestamp": "now"}, "probe.started_timestamp is not a time in Unix seconds"),
        ({"unchecked": "all"}, "probe.unchecked is not a list"),
        (
            {"state": {"last_complete_timestamp": "x"}},
            "probe.state is not an object with last_complete_timestamp in Unix seconds",
        ),
    ],
)
def test_merge_of_a_damaged_probe_report(
    change: dict[str, Any], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write(tmp_path, "a.json", _report(0, **change))
    b = _write(tmp_path, "b.json", _report(1))
    code, out, err = _run(capsys, "report", "merge", a, b)
    assert (code, out) == (2, "")
    assert err == f"shipsure: {a}: {why}\n"


def test_merge_of_json_nested_too_deep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path, "a.json", "[" * 100_000 + "]" * 100_000)
    code, _, err = _run(capsys, "report", "merge", a)
    assert code == 2
    assert err.startswith(f"shipsure: {a}: not JSON (maximum recursion depth")


def test_merge_of_a_probe_and_a_scan_names_the_odd_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = {"command": "scan", "findings": [], "shard": {"index": 1, "count": 2}}
    a = _write(tmp_path, "a.json", _report(0))
    b = _write(tmp_path, "b.json", scan)
    code, _, err = _run(capsys, "report", "merge", b, a)
    assert code == 2
    assert err == (
        f"shipsure: {b}: not a probe report like {a}: merge the shards of one scan or one probe\n"
    )


@pytest.mark.parametrize("command", ["state", "merge"])
def test_a_fifo_is_refused_not_waited_on(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)
    if command == "state":
        code, _, err = _run(capsys, "probe", "--state", str(fifo), NOWHERE)
        assert err == f"shipsure: --state {fifo}: not a regular file\n"
    else:
        code, _, err = _run(capsys, "report", "merge", str(fifo))
        assert err == f"shipsure: {fifo}: not a regular file\n"
    assert code == 2


def test_textfile_not_named_prom_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written, never scraped: node-exporter's collector reads *.prom only.
    target = tmp_path / "metrics.txt"
    code, _, err = _run(capsys, "probe", "--textfile", str(target), NOWHERE)
    assert code == 3  # nothing listens: could not check
    assert err.startswith(
        f"shipsure: warning: --textfile {target}: node-exporter's textfile collector reads "
        "only *.prom files\n"
    )
    assert target.exists()


def test_textfile_naming_a_folder_is_refused_before_the_walk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The collector's folder given for the file: exit 2 at once (it was exit 3 after the
    whole walk, "not a regular file")."""
    code, out, err = _run(capsys, "probe", "--textfile", str(tmp_path), NOWHERE)
    assert code == 2 and out == ""
    assert err == f"shipsure: --textfile {tmp_path}: a folder; give e.g. {tmp_path}/shipsure.prom\n"
