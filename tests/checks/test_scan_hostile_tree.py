"""The hostile tree: symlinks (inside, outside, dangling, loops), FIFOs and sockets in every
layout folder, under the names a scan reads. `scan` and `scan --apply` finish (in a child
process with a generous guard timeout, never a speed assertion) within a generous memory
bound, report every planted oddity at its storage path, change nothing outside the root
(a sentinel tree hashed before and after), and change inside it only what they planned."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.findings import CHECK_ERROR
from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate
from shipsure.storage import layout

SPEC = SyntheticSpec(repositories=6, tags=2, platforms=2, layers=2, layer_size=128)
GUARD_SECONDS = 300
MEMORY_BOUND_KIB = 300 * 1024
OLD = 1_000_000_000.0  # 2001: older than any threshold
# Prints the child's peak resident set (KiB) on its own last stderr line.
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def state(root: Path) -> dict[str, str]:
    """Every entry under `root`, never following a link nor opening anything but a regular
    file: content hash, link target, or file type."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = f"link:{os.readlink(path)}"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                out[rel] = f"type:{stat.S_IFMT(st.st_mode)}"
    return out


def _socket_at(path: Path, keep: list[socket.socket]) -> None:
    # A socket's path must be short: bind in a short folder, then move it into place.
    short = Path(tempfile.mkdtemp(prefix="s"))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(short / "s"))
    keep.append(server)
    os.replace(short / "s", path)
    short.rmdir()


def _away(root: Path, path: str, outside: Path) -> Path:
    """Move `path` outside the root (into `outside`) and link it from its place."""
    target = outside / path.replace("/", "_")
    shutil.move(root / path, target)
    (root / path).symlink_to(target)
    return target


def plant(tree: SyntheticStorage, root: Path, outside: Path, keep: list[socket.socket]) -> dict:
    """Plant the oddities; returns {storage path: the finding kinds that may name it}."""
    r = tree.repositories
    expect: dict[str, set[str]] = {}
    OUT, ERR = {k.LINK_OUTSIDE_ROOT}, {CHECK_ERROR}

    def at(path: str, kinds: set[str]) -> str:
        expect[path] = kinds
        return path

    # r0: _uploads linked outside, holding an old upload (must never be removed).
    uploads = outside / "uploads"
    (uploads / "precious").mkdir(parents=True)
    (uploads / "precious" / "startedat").write_text("2020-01-01T00:00:00Z")
    os.symlink(uploads, root / at(layout.uploads_dir(r[0]), OUT))
    # r1: _layers, and a tag folder, linked outside.
    _away(root, at(f"{layout.repository_dir(r[1])}/_layers", OUT), outside)
    _away(root, at(layout.tag_dir(r[1], "v1"), OUT), outside)
    # r2: revisions a symlink loop; a tag's current dangling inside the root; an upload
    # folder linked outside.
    revisions = root / at(f"{layout.repository_dir(r[2])}/_manifests/revisions", ERR)
    shutil.rmtree(revisions)
    revisions.symlink_to("revisions")
    current = root / layout.tag_current_link(r[2], "v0")
    shutil.rmtree(current.parent)
    current.parent.symlink_to("nowhere")
    at(str(layout.tag_current_link(r[2], "v0")).rpartition("/")[0], {k.TAG_LINK_MISSING})
    upload = outside / "upload2"
    upload.mkdir()
    (upload / "startedat").write_text("2020-01-01T00:00:00Z")
    (root / layout.uploads_dir(r[2])).mkdir(parents=True, exist_ok=True)
    os.symlink(upload, root / at(layout.upload_dir(r[2], "gone"), OUT))
    # r3: a layer link a FIFO; a revision folder a dangling link leaving the root; a tag
    # history link a socket; a tag's current/link a link to a file outside.
    t3 = tree.tag(r[3], "v0")
    layer_link = root / at(layout.layer_link(r[3], t3.children[0].layers[0]), ERR)
    layer_link.unlink()
    os.mkfifo(layer_link)
    rev_dir = root / at(layout.revision_link_dir(r[3], t3.children[1].digest), OUT)
    shutil.rmtree(rev_dir)
    rev_dir.symlink_to("/nonexistent/shipsure-test")
    history = root / at(layout.tag_index_link(r[3], "v0", t3.index), ERR)
    history.unlink()
    _socket_at(history, keep)
    tag_link = _away(root, at(layout.tag_current_link(r[3], "v1"), OUT), outside)
    assert tag_link.is_file()
    # r4: the repository folder itself linked outside; loops beside it.
    _away(root, at(layout.repository_dir(r[4]), OUT), outside)
    parent = root / layout.repository_dir(r[4]).rpartition("/")[0]
    (parent / "loopa").symlink_to(".")
    at(f"{layout.repository_dir(r[4]).rpartition('/')[0]}/loopa", ERR)
    (root / at(f"{layout.REPOSITORIES}/loopb", ERR)).symlink_to("..")
    # r5: blobs: a prefix folder linked outside, a blob folder linked inside (keeps
    # working), a layer's data a FIFO, a manifest's data a socket, a config's data a link
    # to a device; a stale temp file beside a missing link.
    t5 = tree.tag(r[5], "v0")
    layers5 = t5.children[0].layers
    fifo_data = root / at(layout.blob_data(layers5[0]), ERR)
    fifo_data.unlink()
    os.mkfifo(fifo_data)
    socket_data = root / at(layout.blob_data(t5.children[1].digest), ERR)
    socket_data.unlink()
    _socket_at(socket_data, keep)
    device = root / at(layout.blob_data(t5.children[1].config), OUT)
    device.unlink()
    device.symlink_to("/dev/zero")
    inside = root / layout.blob_dir(layers5[1])
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    inside.rename(elsewhere / "blob")
    inside.symlink_to(elsewhere / "blob")
    t5b = tree.tag(r[5], "v1")
    prefix = layout.blob_dir(t5b.children[0].layers[1]).rsplit("/", 1)[0]
    if not any(prefix in p for p in expect):
        _away(root, at(prefix, OUT), outside)
    link_dir = root / layout.layer_link_dir(r[5], t5b.children[1].layers[0])
    (link_dir / "link").unlink()
    temp = link_dir / ".link.abcd1234.tmp"
    temp.write_text("sha256:")
    os.utime(temp, (OLD, OLD))
    at(str(temp.relative_to(root)), {k.TEMP_FILE_STALE})
    return expect


def _run(root: Path, *args: str) -> tuple[int, dict[str, Any], int]:
    """(exit code, JSON report, peak RSS of the scan in KiB)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            sys.executable,
            "-m",
            "shipsure",
            "scan",
            "--recheck-delay=0",
            "--verify-content",
            "--format",
            "json",
            *args,
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "SHIPSURE_STATE_DIR": str(root.parent / "state"),
        },
        check=False,
    )
    assert done.returncode in (1, 3), done.stderr
    return done.returncode, json.loads(done.stdout), int(done.stderr.strip().splitlines()[-1])


def test_hostile_tree_is_scanned_and_repaired_without_leaving_the_root(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("hostile")
    tree = generate(base / "gen", SPEC)
    root, outside = tree.root, base / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("do not touch")
    keep: list[socket.socket] = []
    try:
        expect = plant(tree, root, outside, keep)
        outside_before, root_before = state(outside), state(root)

        code, doc, rss = _run(root)
        assert code == 1  # real problems win over "could not check"
        assert any(f["kind"] == CHECK_ERROR for f in doc["findings"])
        assert rss < MEMORY_BOUND_KIB
        assert state(root) == root_before and state(outside) == outside_before

        by_path: dict[str, set[str]] = {}
        for f in doc["findings"]:
            by_path.setdefault(f.get("storage_path", ""), set()).add(f["kind"])
        for path, kinds in expect.items():
            named = {
                kind
                for where, found in by_path.items()
                if where == path or where.startswith(path + "/")
                for kind in found
            }
            assert named & kinds, (path, kinds, named)
        # Nothing is called missing or re-linkable behind a link: only r3's and r5's own
        # faults (the removed layer link beside the temp file) may be repaired.
        assert not [
            f
            for f in doc["findings"]
            if f["kind"] in (k.INDEX_CHILD_RELINKABLE, k.TAG_REVISION_MISSING)
        ]
        # One finding per outside link, never more.
        outside_links = [
            f["storage_path"] for f in doc["findings"] if f["kind"] == k.LINK_OUTSIDE_ROOT
        ]
        assert sorted(outside_links) == sorted(set(outside_links))

        code, doc, rss = _run(root, "--apply")
        assert rss < MEMORY_BOUND_KIB
        assert state(outside) == outside_before
        after = state(root)
        changed = {
            p for p in root_before.keys() | after.keys() if root_before.get(p) != after.get(p)
        }
        done = [r for r in doc.get("repairs", []) if r["result"] == "done"]
        assert done, doc.get("repairs")
        for path in changed:
            assert any(path == r["target"] or path.startswith(r["target"] + "/") for r in done), (
                path
            )
        # Nothing was planned behind a link leaving the root.
        for r in doc.get("repairs", []):
            for link in outside_links:
                assert not r["target"].startswith(link + "/") and r["target"] != link, r
    finally:
        for server in keep:
            server.close()
