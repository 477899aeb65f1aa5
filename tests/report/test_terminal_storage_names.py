"""Text output never writes raw bytes that are not UTF-8, nor terminal controls, taken from
storage or registry names. A tag folder named `bad\\xff` (made with `os.mkdir(b"...")`) used
to reach the terminal as the raw byte in `scan` output (JSON wrote `\\xff`); plans, restore
plans, gc-check's summary, serve's logs and its page went unescaped too. Each is written
as JSON writes it: `\\xNN`."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from shipsure import plan as planning
from shipsure.cli.main import main
from shipsure.recovery.plan import Lost, RestorePlan
from shipsure.recovery.render import render_plan
from shipsure.report.terminal import one_line, printable
from shipsure.sandbox.synthetic import SyntheticSpec, generate
from shipsure.serve import logs
from shipsure.storage import layout
from tests.serve.page_helpers import page_of

RAW = b"bad\xff"
BAD = RAW.decode("utf-8", "surrogateescape")  # how Python hands us the folder's name
RED = "red\x1b[31m"


def _clean(text: str) -> None:
    """What a terminal is safe to be given: valid UTF-8, no ESC, no carriage return."""
    text.encode("utf-8")  # raises on a lone surrogate (an undecodable byte)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text


def test_printable_writes_undecodable_bytes_as_json_does() -> None:
    assert printable(BAD) == "bad\\xff"
    assert printable("caf\udce9-\udcff") == "caf\\xe9-\\xff"
    assert printable("x\ud800y") == "x\\xed\\xa0\\x80y"  # a stray surrogate: its UTF-8 form
    assert printable("bad\\xff") == "bad\\xff"  # escaping twice changes nothing
    assert one_line(f"/srv/{BAD}") == "/srv/bad\\xff"


@pytest.fixture
def odd_storage(tmp_path: Path) -> Path:
    """Synthetic storage with a tag folder named with a raw 0xff byte and one with ESC, and
    a repository whose name holds both, with layer links to no blob and to an unused one."""
    root = tmp_path / "storage"
    tree = generate(root, SyntheticSpec(repositories=1, tags=1, platforms=1, layers=1))
    repos = os.fsencode(root / layout.V2 / "repositories")
    repo = os.fsencode(tree.repositories[0])
    tags = repos + b"/" + repo + b"/_manifests/tags/"
    os.mkdir(tags + RAW)
    os.mkdir(tags + RED.encode())
    odd = repos + b"/team0/x\xff\x1b[2J"
    shutil.copytree(repos + b"/" + repo, odd)
    for hex_ in (b"e" * 64, b"d" * 64):  # e: a link to no blob; d: to a blob nothing uses
        link = odd + b"/_layers/sha256/" + hex_
        os.makedirs(link)
        with open(link + b"/link", "wb") as f:
            f.write(b"sha256:" + hex_)
    data = root / layout.V2 / "blobs/sha256/dd" / ("d" * 64) / "data"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"unused")
    return root


def test_scan_text_escapes_storage_names(
    odd_storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scan", "--remove-dangling-layer-links", str(odd_storage)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    _clean(out)
    assert "tag bad\\xff has a folder but no current/link" in out
    assert "tag red\\x1b[31m has a folder but no current/link" in out
    assert "team0/x\\xff\\x1b[2J" in out
    # The repair plan printed after the findings names the storage path it would change.
    plan = out[out.index("repair plan") :]
    assert "repositories/team0/x\\xff\\x1b[2J/_layers/sha256/eeee" in plan

    assert main([*argv[:-1], "--format", "json", str(odd_storage)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {"tag bad\\xff", "tag red\x1b[31m"} <= {f["path"][0] for f in doc["findings"]}


def test_gc_check_and_gc_text_escape_storage_names(
    odd_storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gc-check", "--registry-version", "2.8", str(odd_storage)]) == 1
    out = capsys.readouterr().out
    _clean(out)
    # distribution's own message quotes the name: the summary line escapes it too.
    assert "would stop: failed to mark: failed to parse repo name team0/x\\xff\\x1b[2J" in out
    assert main(["gc", "--min-age", "0", str(odd_storage)]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "repositories/team0/x\\xff\\x1b[2J/_layers/sha256/dddd" in out
    # JSON as the report JSON is: strict readers refuse an escaped lone surrogate.
    assert main(["gc", "--min-age", "0", "--format", "json", str(odd_storage)]) == 0
    doc = json.loads(capsys.readouterr().out)
    targets = [a["target"] for a in doc["actions"]]
    assert any("team0/x\\xff\x1b[2J/_layers" in t for t in targets), targets
    for target in targets:
        target.encode("utf-8")


def test_retain_on_storage_text_escapes_tag_names(
    odd_storage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tags = odd_storage / layout.V2 / "repositories/team0/app00000/_manifests/tags"
    [listed] = [p for p in tags.iterdir() if (p / "current/link").is_file()]
    for name in (RAW, RED.encode()):  # the odd tag folders become tags of the same image
        current = os.fsencode(tags) + b"/" + name + b"/current"
        os.mkdir(current)
        shutil.copy(listed / "current/link", current + b"/link")
    policy = tmp_path / "policy.yaml"
    policy.write_text('policies:\n  - repositories: "team0/app*"\n    keep: {match: "v.*"}\n')
    argv = ["retain", "--policy", str(policy), "--on-storage", str(odd_storage)]
    assert main([*argv, "--journal", str(tmp_path / "j.jsonl")]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "team0/app00000:bad\\xff" in out and "team0/app00000:red\\x1b[31m" in out


def test_plan_lines_escape_what_they_name() -> None:
    action = planning.Action("remove-layer-link", f"repositories/{BAD}/{RED}", "because\r")
    plan = planning.Plan("scan-repair", [action], notes=[f"note {RED}"])
    text = plan.render_text()
    _clean(text)
    assert "repositories/bad\\xff/red\\x1b[31m  (because\\r)" in text
    assert "note red\\x1b[31m" in text
    outcome = planning.Outcome(action, planning.Result.FAILED, f"gone {BAD}")
    _clean(outcome.describe())
    assert outcome.describe().endswith("(gone bad\\xff)")


def test_restore_plan_escapes_names() -> None:
    plan = RestorePlan(f"reg:5000{RED}", [f"oci:/srv/{BAD}"])
    plan.lost = [Lost(f"team/{RED}", "sha256:" + "1" * 64, "layer", 1, f"no source {BAD}")]
    plan.notes = [f"oci:/srv/{BAD}: not readable\x1b]0;owned\x07"]
    text = render_plan(plan, "verify --deep")
    _clean(text)
    assert "team/red\\x1b[31m@sha256:" in text and "oci:/srv/bad\\xff" in text
    assert text.count("\n") == len(text.splitlines())


def test_serve_log_lines_escape_names() -> None:
    stream = io.StringIO()
    logs.configure("text", "info", stream)
    log = logging.getLogger("shipsure.serve.test")
    log.warning("push verification failed\nforged line", extra={"repository": f"x/{RED}{BAD}"})
    text = stream.getvalue()
    _clean(text)
    assert text.count("\n") == 1
    assert "repository=x/red\\x1b[31mbad\\xff" in text
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    log.warning("odd", extra={"repository": f"x/{BAD}"})
    assert json.loads(stream.getvalue())["repository"] == "x/bad\\xff"


def test_serve_page_escapes_and_encodes_odd_names() -> None:
    finding = {
        "kind": "tag-link-missing",
        "severity": "error",
        "repository": f"team/{BAD}",
        "message": f"tag {RED} <b>gone</b>",
        "path": [f"tag {BAD}"],
    }
    html = page_of(finding, tags=(RED, BAD), source="probe")
    _clean(html)  # encodable: the page used to fail with UnicodeEncodeError (HTTP 500)
    assert "team/bad\\xff" in html and "tag red\\x1b[31m &lt;b&gt;gone&lt;/b&gt;" in html
