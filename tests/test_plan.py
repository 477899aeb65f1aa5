"""shipsure.plan: journal before and after, preconditions re-checked, replay after a kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipsure import plan as p
from shipsure.findings import ExitCode

# A writer small enough to read: each action writes `facts["text"]` into the file `target`,
# planned only when the file does not hold that text yet.
WRITER = """
import sys
from pathlib import Path
from shipsure import plan as p
from shipsure.fileio import write_atomic

class FileWriter:
    def check(self, action):
        path = Path(action.target)
        now = path.read_text() if path.exists() else None
        if now == action.facts["text"]:
            return p.AlreadyDone("holds the text")
        if now != action.facts.get("before"):
            return p.Refused("changed since the plan")
        return p.Ready()

    def run(self, action):
        write_atomic(action.target, action.facts["text"].encode())

def make_plan(folder):
    actions = []
    for name in ("a", "b", "c"):
        path = Path(folder) / name
        now = path.read_text() if path.exists() else None
        if now != "new " + name:
            facts = {"text": "new " + name, "before": now}
            actions.append(p.Action("write", str(path), "test", facts))
    return p.Plan("test-writer", actions)

if __name__ == "__main__":
    folder, journal = sys.argv[1], sys.argv[2]
    for o in p.apply(make_plan(folder), FileWriter(), p.Journal(journal)):
        print(o.describe())
"""


@pytest.fixture
def writer_script(tmp_path: Path) -> Path:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return script


def _run(
    script: Path, folder: Path, journal: Path, crash: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != p.CRASH_ENV}
    if crash:
        env[p.CRASH_ENV] = crash
    return subprocess.run(
        [sys.executable, str(script), str(folder), str(journal)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _states(journal: Path) -> list[tuple[str, str]]:
    return [
        (e["state"], Path(e["target"]).name)
        for e in map(json.loads, journal.read_text().splitlines())
    ]


def test_apply_journals_intent_then_result_and_is_idempotent(
    writer_script: Path, tmp_path: Path
) -> None:
    folder, journal = tmp_path / "files", tmp_path / "state" / "journal.jsonl"
    folder.mkdir()
    (folder / "b").write_text("old b")
    assert _run(writer_script, folder, journal, None).returncode == 0
    assert {f.name: f.read_text() for f in folder.iterdir()} == {
        "a": "new a",
        "b": "new b",
        "c": "new c",
    }
    assert _states(journal) == [
        ("intent", "a"),
        ("done", "a"),
        ("intent", "b"),
        ("done", "b"),
        ("intent", "c"),
        ("done", "c"),
    ]
    # Again: nothing planned, nothing journaled.
    again = _run(writer_script, folder, journal, None)
    assert again.returncode == 0 and again.stdout == ""
    assert len(_states(journal)) == 6


@pytest.mark.parametrize("point", p.CRASH_POINTS)
@pytest.mark.parametrize("nth", [1, 2, 3])
def test_killed_at_any_point_then_rerun_ends_consistent(
    writer_script: Path, tmp_path: Path, point: str, nth: int
) -> None:
    folder, journal = tmp_path / "files", tmp_path / "journal.jsonl"
    folder.mkdir()
    killed = _run(writer_script, folder, journal, f"{point}:{nth}")
    assert killed.returncode == 137
    rerun = _run(writer_script, folder, journal, None)
    assert rerun.returncode == 0, rerun.stderr
    assert {f.name: f.read_text() for f in folder.iterdir()} == {
        "a": "new a",
        "b": "new b",
        "c": "new c",
    }
    # Every intent has its result; nothing is left open for a third run.
    assert p.Journal(journal).open_intents("test-writer") == []
    if point == "after-run":
        # The killed run's write took effect: the re-run settles it as already done.
        assert "already-done" in rerun.stdout and "[interrupted earlier]" in rerun.stdout
    assert _run(writer_script, folder, journal, None).stdout == ""


class _Writer:
    def __init__(self, pre: p.Precondition, fail: bool = False) -> None:
        self.pre, self.fail, self.ran = pre, fail, 0

    def check(self, action: p.Action) -> p.Precondition:
        return self.pre

    def run(self, action: p.Action) -> None:
        self.ran += 1
        if self.fail:
            raise OSError(13, "Permission denied", action.target)


@pytest.mark.parametrize(
    ("pre", "fail", "result", "ran"),
    [
        (p.Ready(), False, p.Result.DONE, 1),
        (p.AlreadyDone("there"), False, p.Result.ALREADY_DONE, 0),
        (p.Refused("moved"), False, p.Result.REFUSED, 0),
        (p.Ready(), True, p.Result.FAILED, 1),
    ],
)
def test_precondition_decides_and_failure_is_an_outcome(
    tmp_path: Path, pre: p.Precondition, fail: bool, result: p.Result, ran: int
) -> None:
    writer = _Writer(pre, fail)
    plan = p.Plan("w", [p.Action("op", "/x"), p.Action("op", "/y")])
    outcomes = p.apply(plan, writer, p.Journal(tmp_path / "j.jsonl"))
    assert [o.result for o in outcomes] == [result, result]
    assert writer.ran == 2 * ran
    if fail:
        assert outcomes[0].reason == "/x: Permission denied"


def test_plan_prints_as_text_and_json() -> None:
    plan = p.Plan("w", [p.Action("remove", "a/b", "upload-stale", {"n": 1})], ["skipped c"])
    assert plan.render_text() == (
        "w plan: 1 action(s)\n  remove             a/b  (upload-stale)\n  note: skipped c\n"
    )
    body = plan.to_json()
    assert body["actions"][0]["facts"] == {"n": 1} and body["notes"] == ["skipped c"]
    assert body["plan"] == p.Plan("w", list(plan.actions)).id


def test_nothing_to_do_leaves_no_journal(tmp_path: Path) -> None:
    journal = tmp_path / "state" / "j.jsonl"
    assert p.apply(p.Plan("w", []), _Writer(p.Ready()), p.Journal(journal)) == []
    assert not journal.parent.exists()


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    p.Journal(journal).record("w", "id", "intent", p.Action("op", "t"))
    with journal.open("a") as handle:
        handle.write('{"state": "done", "op": "op", "targ')  # killed mid-append
    assert [a.key for a in p.Journal(journal).open_intents("w")] == ["op t"]


def test_state_dir_is_never_the_current_directory() -> None:
    assert p.state_dir({"SHIPSURE_STATE_DIR": "/s"}) == Path("/s")
    assert p.state_dir({"XDG_STATE_HOME": "/x", "HOME": "/h"}) == Path("/x/shipsure")
    # A relative XDG_STATE_HOME is invalid by the specification: ignored.
    assert p.state_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/state/shipsure")


@pytest.mark.parametrize("device", ["/dev/full", "/dev/zero"])
def test_a_device_as_journal_is_refused_not_read_forever(device: str) -> None:
    # `--journal /dev/full` read an endless line of zeros: a hang with unbounded memory.
    with pytest.raises(p.JournalError, match=f"journal {device}: not a regular file"):
        p.Journal(device).open_intents("w")
    with pytest.raises(p.JournalError, match=f"journal {device}: not a regular file"):
        p.Journal(device).record("w", "id", "intent", p.Action("op", "t"))


def test_a_fifo_as_journal_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "j.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(p.JournalError, match=r"j\.jsonl"):
        p.Journal(fifo).record("w", "id", "intent", p.Action("op", "t"))
    # Every --apply run reads its journal first (open intents): that read must not wait
    # for a writer either.
    with pytest.raises(p.JournalError, match=r"j\.jsonl: not a regular file"):
        p.Journal(fifo).open_intents("w")


def test_an_over_long_line_is_skipped_in_bounded_reads(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    with journal.open("wb") as handle:
        handle.write(b"x" * (3 * p._MAX_JOURNAL_LINE + 5) + b"\n")
    p.Journal(journal).record("w", "id", "intent", p.Action("op", "t"))
    assert [a.key for a in p.Journal(journal).open_intents("w")] == ["op t"]


@pytest.mark.parametrize(
    ("results", "code"),
    [
        ([], ExitCode.CLEAN),
        ([p.Result.DONE, p.Result.ALREADY_DONE, p.Result.ABANDONED], ExitCode.CLEAN),
        ([p.Result.DONE, p.Result.REFUSED], ExitCode.FINDINGS),
        ([p.Result.REFUSED, p.Result.FAILED], ExitCode.COULD_NOT_RUN),
    ],
)
def test_an_apply_that_did_less_than_it_printed_is_not_clean(
    results: list[p.Result], code: ExitCode
) -> None:
    action = p.Action("remove-upload", "x", "because", {})
    assert p.exit_code([p.Outcome(action, r) for r in results]) is code
