"""Benchmark `shipsure scan` against the anchors, measured side by side in one run.

Trees: 200 repositories x 10 multi-arch tags (registry-facts §5 scale), one 10x larger
(10x the repositories, images of the same shape and size, so files and bytes both scale),
and a small one of 100 repositories x 10 multi-arch tags with one lost layer (its data file
gone an hour ago: what a periodic scan finds), written once by the synthetic generator into
bench/out/ (kept for later runs; written again when its spec changes).

    scan                 vs  docker-registry garbage-collect --dry-run   (target <= 0.5x)
    scan                 vs  find ROOT -type f | wc -l                  (target <= 1.5x)
    scan --verify-content vs sha256sum of every data file             (target <= 1.3x)
and the peak memory (max RSS, from /usr/bin/time) of each. Medians of --runs rounds, each
round running every command once in turn.

    .venv/bin/python bench/scan.py [--runs 3] [--only 1x|10x|lost]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from installed import byte_compile

from shipsure.sandbox.synthetic import SyntheticSpec, SyntheticStorage, generate

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PYTHON = sys.executable
TREES = {
    "1x": SyntheticSpec(
        repositories=200, tags=10, platforms=3, layers=1, layer_size=16384, teams=8
    ),
    "10x": SyntheticSpec(
        repositories=2000, tags=10, platforms=3, layers=1, layer_size=16384, teams=8
    ),
    "lost": SyntheticSpec(
        repositories=100, tags=10, platforms=3, layers=1, layer_size=16384, teams=8
    ),
}
# Trees with damage: only scan and its GC anchor are measured on them.
DAMAGED = {"lost"}
DAMAGE_AGE = 3600.0  # seconds since the damage: a scan finds old damage, not a push


def lose_one_layer(root: Path, made: SyntheticStorage) -> str:
    """Remove one layer's data file, and date every file and folder an hour back."""
    layer = made.tags[len(made.tags) // 2].children[0].layers[-1]
    hex_ = layer.partition(":")[2]
    (root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data").unlink()
    when = time.time() - DAMAGE_AGE
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.utime(os.path.join(folder, name), (when, when))
    return layer


def tree(name: str) -> Path:
    root = OUT / f"scan-{name}"
    marker = root / ".complete"
    spec = dataclasses.asdict(TREES[name])
    if not marker.exists() or json.loads(marker.read_text()).get("spec") != spec:
        if root.exists():
            shutil.rmtree(root)
        print(f"generating {name} tree into {root} ...", file=sys.stderr)
        started = time.monotonic()
        made = generate(root, TREES[name], record=name in DAMAGED)
        lost = lose_one_layer(root, made) if name in DAMAGED else None
        marker.write_text(
            json.dumps({"files": made.files, "blobs": made.blobs, "spec": spec, "lost": lost})
        )
        print(
            f"  {made.files} files, {made.blobs} blobs in {time.monotonic() - started:.0f} s",
            file=sys.stderr,
        )
    return root


def spec_text(name: str) -> str:
    spec = TREES[name]
    return (
        f"{spec.repositories} repositories x {spec.tags} tags x {spec.platforms} platforms, "
        f"layers of {spec.layer_size // 1024} KiB"
    )


def run_once(command: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of a shell command."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "sh", "-c", command + " >/dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall, peak = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak)


def measure(commands: dict[str, str], runs: int) -> dict[str, tuple[float, int]]:
    """Median wall seconds and max peak RSS (KiB) of each command over `runs` rounds.

    Each round runs every command once, in turn, so a burst of load elsewhere on the
    machine falls on the anchors and on shipsure alike instead of on one of them."""
    walls: dict[str, list[float]] = {label: [] for label in commands}
    peaks: dict[str, list[int]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            wall, peak = run_once(command)
            walls[label].append(wall)
            peaks[label].append(peak)
    return {label: (statistics.median(walls[label]), max(peaks[label])) for label in commands}


def gc_config(root: Path) -> Path:
    config = root.parent / f"{root.name}-gc.yml"
    config.write_text(
        json.dumps({"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(root)}}})
    )
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=sorted(TREES))
    args = parser.parse_args()
    byte_compile()
    env_note = "env -u AWS_CA_BUNDLE"
    for name in [args.only] if args.only else list(TREES):
        root = tree(name)
        scan = f"{PYTHON} -m shipsure scan {root} --fail-on critical"
        if name in DAMAGED:
            gc = f"{env_note} docker-registry garbage-collect --dry-run {gc_config(root)}"
            run_once(f"find {root} -type f | wc -l")  # warm the page cache
            results = measure({"gc --dry-run": gc, "scan": scan}, args.runs)
            made = json.loads((root / ".complete").read_text())
            print(f"\n== tree {name}: {made['files']} files, {spec_text(name)}, lost layer")
            for label, (wall, peak) in results.items():
                print(f"  {label:24} {wall:7.2f} s   peak {peak / 1024:7.1f} MiB")
            ratio = results["scan"][0] / results["gc --dry-run"][0]
            print(f"  scan / gc --dry-run          = {ratio:.2f}  (target <= 0.5)")
            continue
        commands = {
            "find": f"find {root} -type f | wc -l",
            "gc --dry-run": (
                f"{env_note} docker-registry garbage-collect --dry-run {gc_config(root)}"
            ),
            "scan": scan,
            "sha256sum": (
                f"find {root}/docker/registry/v2/blobs -name data -print0 | xargs -0 sha256sum"
            ),
            "scan --verify-content": f"{scan} --verify-content",
        }
        run_once(commands["find"])  # warm the page cache
        results = measure(commands, args.runs)
        made = json.loads((root / ".complete").read_text())
        print(f"\n== tree {name}: {made['files']} files, {made['blobs']} blobs, {spec_text(name)}")
        for label, (wall, peak) in results.items():
            print(f"  {label:24} {wall:7.2f} s   peak {peak / 1024:7.1f} MiB")
        s, gc, f = results["scan"][0], results["gc --dry-run"][0], results["find"][0]
        v, sh = results["scan --verify-content"][0], results["sha256sum"][0]
        print(f"  scan / gc --dry-run          = {s / gc:.2f}  (target <= 0.5)")
        print(f"  scan / find                  = {s / f:.2f}  (target <= 1.5)")
        print(f"  verify-content / sha256sum   = {v / sh:.2f}  (target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
