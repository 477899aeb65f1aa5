"""Benchmark `shipsure gc-check` against the real `garbage-collect --dry-run`, in one run.

Trees: 200 repositories x 10 multi-arch tags x 3 platforms (registry-facts §5 scale) and one
10x larger (10x the repositories), written once by the synthetic generator into bench/out/
(kept for later runs; written again when the spec changes). Layers are small: neither side
reads layer bytes, only folders, links and manifests.

For each tree, collector version (2: Debian's docker-registry 2.8; 3: distribution v3 built
by scripts/peers.sh, when present) and flag set (plain, --delete-untagged):

    shipsure gc-check ROOT --registry-version V [-m]   vs   garbage-collect --dry-run [-m]

Wall time, CPU time (user + system: steadier on a shared machine) and peak memory (max RSS,
from /usr/bin/time; for gc-check the larger of its two processes) of one run each (--runs
for more, medians), after a `find` that warms the page cache.
Target: gc-check <= 0.5x the dry run's wall time.

    .venv/bin/python bench/gc.py [--runs 1] [--only 1x]
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

from shipsure.sandbox.synthetic import SyntheticSpec, generate

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PYTHON = sys.executable
BINARIES = {2: Path("/usr/bin/docker-registry"), 3: HERE.parent / ".tools" / "bin" / "registry"}
TREES = {
    "1x": SyntheticSpec(repositories=200, tags=10, platforms=3, layers=1, layer_size=1024, teams=8),
    "10x": SyntheticSpec(
        repositories=2000, tags=10, platforms=3, layers=1, layer_size=1024, teams=8
    ),
}


def tree(name: str) -> Path:
    root = OUT / f"gc-{name}"
    marker = root / ".complete"
    spec = dataclasses.asdict(TREES[name])
    if not marker.exists() or json.loads(marker.read_text()).get("spec") != spec:
        if root.exists():
            shutil.rmtree(root)
        print(f"generating {name} tree into {root} ...", file=sys.stderr)
        started = time.monotonic()
        made = generate(root, TREES[name], record=False)
        marker.write_text(json.dumps({"files": made.files, "blobs": made.blobs, "spec": spec}))
        print(f"  {made.files} files in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return root


def measure(command: list[str], runs: int) -> tuple[float, int, int, float]:
    """Median wall seconds, max peak RSS (KiB), the exit status and median CPU seconds
    (user + system) of a command."""
    walls, peaks, cpus = [], [], []
    status = 0
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for _ in range(runs):
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M %U %S", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=False,
        )
        status = done.returncode
        wall, peak, user, system = done.stderr.strip().splitlines()[-1].split()
        walls.append(float(wall))
        peaks.append(int(peak))
        cpus.append(float(user) + float(system))
    return statistics.median(walls), max(peaks), status, statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", choices=sorted(TREES))
    args = parser.parse_args()
    byte_compile()
    versions = [v for v, b in BINARIES.items() if b.is_file()]
    for missing in sorted(set(BINARIES) - set(versions)):
        print(f"skipping distribution {missing}: {BINARIES[missing]} is absent", file=sys.stderr)
    for name in [args.only] if args.only else list(TREES):
        root = tree(name)
        config = root.parent / f"gc-{name}.yml"
        config.write_text(
            json.dumps({"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(root)}}})
        )
        subprocess.run(["find", str(root), "-type", "f"], stdout=subprocess.DEVNULL, check=False)
        made = json.loads((root / ".complete").read_text())
        spec = TREES[name]
        print(
            f"\n== tree {name}: {made['files']} files, {made['blobs']} blobs, "
            f"{spec.repositories} repositories x {spec.tags} tags x {spec.platforms} platforms"
        )
        for version in versions:
            for flags in ([], ["--delete-untagged"]):
                gc = [str(BINARIES[version]), "garbage-collect", "--dry-run", *flags, str(config)]
                check = [
                    PYTHON,
                    "-m",
                    "shipsure",
                    "gc-check",
                    str(root),
                    "--registry-version",
                    str(version),
                    "--format",
                    "json",
                    *flags,
                ]
                g_wall, g_peak, g_status, g_cpu = measure(gc, args.runs)
                c_wall, c_peak, c_status, c_cpu = measure(check, args.runs)
                label = f"v{version} {'-m' if flags else 'plain'}"
                print(
                    f"  {label:9} dry-run {g_wall:6.2f} s (cpu {g_cpu:6.2f}) {g_peak / 1024:6.1f}"
                    f" MiB exit {g_status} | gc-check {c_wall:6.2f} s (cpu {c_cpu:6.2f}) "
                    f"{c_peak / 1024:6.1f} MiB exit {c_status} | wall ratio {c_wall / g_wall:.2f}"
                    f" (target <= 0.5), cpu ratio {c_cpu / g_cpu:.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
