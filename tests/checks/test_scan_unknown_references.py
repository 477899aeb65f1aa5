"""A manifest whose references cannot be learned (unreadable, not JSON, over 4 MiB) makes
"which blobs are unreferenced" unknowable: scan says so (a `check-error` naming the
manifest's storage path) instead of calling blobs garbage, as the real collectors agree:
distribution 2.8 and 3.x stop on such a manifest ("failed to mark") and delete nothing.

Storage written by pushes to the real registry, then damaged; the real `garbage-collect`
runs on a copy of each damaged tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shipsure.checks.scan import kinds as k
from shipsure.cli.main import main
from shipsure.findings import CHECK_ERROR
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.storage import layout
from tests.gc_checks import seed

pytestmark = pytest.mark.both_registries

CHECKOUT = Path(__file__).resolve().parents[2]


def _not_json(data: Path) -> None:
    data.write_bytes(b"{not json")


def _over_4_mib(data: Path) -> None:
    doc = json.loads(data.read_bytes())
    doc.setdefault("annotations", {})["padding"] = "x" * (5 << 20)
    data.write_bytes(json.dumps(doc).encode())


def _unreadable(data: Path) -> None:
    data.chmod(0)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "not-json": _not_json,
    "over-4-mib": _over_4_mib,
    "permission-denied": _unreadable,
}


def _shipsure(argv: list[str], *, prefix: tuple[str, ...]) -> tuple[int, dict[str, object]]:
    """`shipsure ARGV --format json` in a process of its own (run under `prefix`)."""
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "shipsure", *argv, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_an_unusable_manifest_is_a_check_error_never_unreferenced_blobs(
    fresh_registry: SandboxRegistry, tmp_path: Path, damage: str
) -> None:
    reg = fresh_registry
    images.push_index(reg.url, "team/app", "latest", platforms=("linux/amd64", "linux/arm64"))
    tool = images.push_image(reg.url, "team/tool", "latest")
    reg.stop()
    version = 2 if reg.flavour == "2.8" else 3
    root = tmp_path / "storage"
    shutil.copytree(reg.root, root)
    DAMAGE[damage](faults.blob_data_path(root, tool.digest))
    prefix = seed.WITHOUT_READ_OVERRIDE if damage == "permission-denied" else ()

    # The real collector, with and without --dry-run: stops on that manifest, deletes nothing.
    for dry_run in (True, False):
        real = seed.real_gc(root, version, False, tmp_path, dry_run=dry_run, prefix=prefix)
        assert real.returncode != 0 and "failed to mark" in real.output, real.output[-2000:]
        assert real.deleted == set()

    # scan: no blob is called unreferenced; a check-error names the manifest and its path.
    scan = ["scan", "--recheck-delay=0", "--unreferenced-min-age=0", str(root)]
    code, doc = _shipsure(scan, prefix=prefix)
    found = doc["findings"]
    assert isinstance(found, list)
    assert not [f for f in found if f["kind"] == k.BLOB_UNREFERENCED], found
    unknown = [f for f in found if f["kind"] == CHECK_ERROR and f["digest"] == tool.digest]
    assert [f["storage_path"] for f in unknown] == [layout.blob_data(tool.digest)]
    assert unknown[0]["unreferenced_not_reported"] == len(tool.blob_digests)
    assert code == (3 if damage == "permission-denied" else 1)

    # gc-check predicts the stop, naming the same path.
    gc_check = ["gc-check", "--registry-version", str(version), str(root)]
    code, doc = _shipsure(gc_check, prefix=prefix)
    found = doc["findings"]
    assert isinstance(found, list)
    aborts = [f for f in found if f["kind"] == "gc-would-abort"]
    assert [f["storage_path"] for f in aborts] == [layout.blob_data(tool.digest)], found
    assert doc["would_delete"]["blobs"] == []  # type: ignore[index]


def test_sharded_scans_merged_say_the_same(
    fresh_registry: SandboxRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = fresh_registry
    for n in range(4):
        images.push_image(reg.url, f"team/tool{n}", "latest")
    bad = images.push_image(reg.url, "team/bad", "latest")
    reg.stop()
    root = reg.root
    _not_json(faults.blob_data_path(root, bad.digest))
    scan = ["scan", "--recheck-delay=0", "--unreferenced-min-age=0", str(root), "--format", "json"]
    assert main(scan) == 1
    whole = json.loads(capsys.readouterr().out)["findings"]
    parts = []
    for i in range(3):
        main([*scan, "--shard", f"{i}/3"])
        parts.append(tmp_path / f"part-{i}.json")
        parts[-1].write_text(capsys.readouterr().out)
    assert main(["report", "merge", "--format", "json", *map(str, parts)]) == 1
    merged = json.loads(capsys.readouterr().out)["findings"]

    def shape(items: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return sorted((f["kind"], f["digest"], f.get("storage_path")) for f in items)

    assert shape(merged) == shape(whole)
    assert not [f for f in merged if f["kind"] == k.BLOB_UNREFERENCED]
    assert [(f["kind"], f["digest"]) for f in merged if f["kind"] == CHECK_ERROR] == [
        (CHECK_ERROR, bad.digest)
    ]
