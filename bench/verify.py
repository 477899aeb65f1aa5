"""Benchmark `shipsure verify` against its anchors, measured side by side in one run, on
distribution 2.8 and on v3 (each registry seeded the same way).

- HEAD mode vs a sequential bash + curl + jq walk making the same requests (GET every
  manifest, HEAD every blob): what a post-push check or CronJob in an Alpine image does.
  Target: verify at <= 0.25x the walk's wall time on a 3-child index.
- `--deep` vs `skopeo copy --all` of the same images into an OCI layout (skopeo fetches and
  checks every manifest and blob too). Target: <= 1.0x.
- `--deep` vs `crane validate --remote`, one run per reference (crane downloads and
  re-hashes config and layers too, registry-facts §6). Target: <= 1.0x.
- Listing the registry: shipsure's client walking `_catalog` and every `tags/list`
  (in-process, and in a fresh interpreter) vs `crane catalog` then `crane ls` per
  repository. Target: <= 1.0x.

Scenarios: one multi-arch image with many layers, and a seeded set of repositories.
Referrer lookups are turned off (`--no-referrers`) so both sides make the same requests.
The Go peers come from scripts/peers.sh; v3 and crane lines are skipped, saying so, when
absent.

    .venv/bin/python bench/verify.py [--runs 3] [--layers 30] [--repos 20] [--layer-kib 64]
                                     [--registry 2.8|3|both]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from installed import byte_compile

from shipsure.sandbox import images, peers
from shipsure.sandbox.registry import (
    FLAVOUR_NAMES,
    FLAVOURS,
    Flavour,
    SandboxRegistry,
    missing_reason,
    registry_available,
)

SHIPSURE = str(Path(sys.executable).with_name("shipsure"))
ACCEPT = (
    "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.list.v2+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)

# The anchor: sequential, one curl per request, jq to find children and blobs.
CURL_WALK = r"""
set -eu
base="$1"; shift
accept="$ACCEPT"
for ref in "$@"; do
  repo="${ref%%:*}"; tag="${ref#*:}"
  top=$(curl -sf -H "Accept: $accept" "$base/v2/$repo/manifests/$tag")
  manifests=$(printf '%s' "$top" | jq -r '.manifests[]?.digest')
  [ -n "$manifests" ] || manifests=TOP
  for m in $manifests; do
    if [ "$m" = TOP ]; then body="$top"; else
      body=$(curl -sf -H "Accept: $accept" "$base/v2/$repo/manifests/$m"); fi
    for b in $(printf '%s' "$body" | jq -r '.config.digest, .layers[].digest'); do
      curl -sf -o /dev/null -I "$base/v2/$repo/blobs/$b"
    done
  done
done
"""


def median_seconds(action: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(cmd: Sequence[str], env: dict[str, str] | None = None, ok: Sequence[int] = (0,)) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode not in ok:
        raise SystemExit(f"bench: {cmd[0]} failed ({result.returncode}): {result.stderr[-2000:]}")


def curl_walk(reg: SandboxRegistry, refs: Sequence[str]) -> Callable[[], None]:
    import os

    env = {**os.environ, "ACCEPT": ACCEPT}
    return lambda: run(["bash", "-c", CURL_WALK, "walk", reg.url, *refs], env=env)


def verify(reg: SandboxRegistry, refs: Sequence[str], *flags: str) -> Callable[[], None]:
    full = [f"{reg.host}/{r}" for r in refs]
    return lambda: run([SHIPSURE, "verify", "--no-referrers", *flags, *full])


def verify_in_process(reg: SandboxRegistry, refs: Sequence[str]) -> Callable[[], None]:
    """The walk alone, without interpreter start-up and imports."""
    from shipsure.checks.verify import VerifyOptions
    from shipsure.checks.verify import verify as walk
    from shipsure.model import Reference
    from shipsure.registry import open_registry

    references = [Reference.parse(f"{reg.host}/{r}") for r in refs]

    def run_walk() -> None:
        with open_registry(reg.host) as client:
            report = walk(references, lambda _host: client, VerifyOptions(referrers=False))
        if report.findings:
            raise SystemExit(f"bench: unexpected findings: {report.findings[:3]}")

    return run_walk


def skopeo_copy_all(reg: SandboxRegistry, refs: Sequence[str]) -> Callable[[], None]:
    def copy() -> None:
        with tempfile.TemporaryDirectory() as out:
            for i, ref in enumerate(refs):
                run(
                    [
                        "skopeo",
                        "copy",
                        "--all",
                        "--quiet",
                        "--src-tls-verify=false",
                        f"docker://{reg.host}/{ref}",
                        f"oci:{out}/layout{i}:latest",
                    ]
                )

    return copy


def crane_validate(reg: SandboxRegistry, refs: Sequence[str], crane: Path) -> Callable[[], None]:
    """`crane validate --remote` of each reference: fetches and re-hashes every blob."""

    def validate() -> None:
        for ref in refs:
            run([str(crane), "validate", "--remote", f"{reg.host}/{ref}"])

    return validate


def list_in_process(reg: SandboxRegistry, expected: int) -> Callable[[], None]:
    """shipsure's registry client: `_catalog` pages, then `tags/list` of each repository."""
    from shipsure.registry import open_registry

    def listing() -> None:
        with open_registry(reg.host) as client:
            found = sum(1 for repo in list(client.catalog()) for _ in client.tags(repo))
        if found != expected:
            raise SystemExit(f"bench: listed {found} tags, expected {expected}")

    return listing


LIST_SCRIPT = """
import sys
from shipsure.registry import open_registry
with open_registry(sys.argv[1]) as client:
    print(sum(1 for repo in list(client.catalog()) for _ in client.tags(repo)))
"""


def list_in_new_process(reg: SandboxRegistry) -> Callable[[], None]:
    """The same listing in a fresh interpreter: what a one-off script pays, start-up included."""
    return lambda: run([sys.executable, "-c", LIST_SCRIPT, reg.host])


def crane_listing(reg: SandboxRegistry, crane: Path) -> Callable[[], None]:
    """`crane catalog`, then `crane ls` of each repository: the shell way with crane."""

    def listing() -> None:
        result = subprocess.run(
            [str(crane), "catalog", reg.host], capture_output=True, text=True, check=True
        )
        for repo in result.stdout.split():
            run([str(crane), "ls", f"{reg.host}/{repo}"])

    return listing


def line(name: str, ours: float, anchor: float, anchor_name: str, target: float) -> str:
    ratio = ours / anchor
    verdict = "ok" if ratio <= target else "MISSED"
    return (
        f"{name:38} shipsure {ours:7.3f}s  {anchor_name:9} {anchor:7.3f}s  "
        f"ratio {ratio:5.2f} (target <= {target:.2f}: {verdict})"
    )


def compile_bytecode() -> None:
    """Time shipsure as installed: `pip install` writes bytecode, but an editable checkout
    under PYTHONDONTWRITEBYTECODE would compile every module again on every run."""
    import compileall

    import shipsure

    compileall.compile_dir(Path(shipsure.__file__).parent, quiet=1)


def bench_registry(flavour: Flavour, args: argparse.Namespace) -> list[str]:
    """Seed one registry of `flavour`, run every scenario against it; the result lines."""
    crane = peers.peer_path("crane")
    with SandboxRegistry(flavour=flavour) as reg:
        start = time.perf_counter()
        size = args.layer_kib * 1024
        images.push_index(reg.url, "bench/big", "latest", layers=args.layers, layer_size=size)
        many = [
            images.push_index(
                reg.url, f"bench/repo{i:03}", "latest", layers=3, layer_size=size
            ).repo
            + ":latest"
            for i in range(args.repos)
        ]
        print(f"{FLAVOUR_NAMES[flavour]}: seeded in {time.perf_counter() - start:.1f}s")
        tag = f"v{flavour}"
        results = []
        for name, refs in (
            ("1. multi-arch, many layers", ["bench/big:latest"]),
            ("2. seeded repositories", many),
        ):
            results.append(
                line(
                    f"{tag} {name}: HEAD",
                    median_seconds(verify(reg, refs), args.runs),
                    median_seconds(curl_walk(reg, refs), args.runs),
                    "curl walk",
                    0.25,
                )
            )
            deep = median_seconds(verify(reg, refs, "--deep"), args.runs)
            results.append(
                line(
                    f"{tag} {name}: --deep",
                    deep,
                    median_seconds(skopeo_copy_all(reg, refs), args.runs),
                    "skopeo",
                    1.0,
                )
            )
            if crane is None:
                results.append(
                    f"{tag} {name}: --deep vs crane: skipped, {peers.missing_reason('crane')}"
                )
            else:
                results.append(
                    line(
                        f"{tag} {name}: --deep",
                        deep,
                        median_seconds(crane_validate(reg, refs, crane), args.runs),
                        "crane val",
                        1.0,
                    )
                )
        if crane is None:
            results.append(f"{tag} 3. listing: skipped, {peers.missing_reason('crane')}")
        else:
            listing = median_seconds(crane_listing(reg, crane), args.runs)
            results.append(
                line(
                    f"{tag} 3. listing (catalog + tags, in-process)",
                    median_seconds(list_in_process(reg, len(many) + 1), args.runs),
                    listing,
                    "crane ls",
                    1.0,
                )
            )
            results.append(
                line(
                    f"{tag} 3. listing (the same, new process)",
                    median_seconds(list_in_new_process(reg), args.runs),
                    listing,
                    "crane ls",
                    1.0,
                )
            )
        walk_only = median_seconds(verify_in_process(reg, ["bench/big:latest"]), args.runs)
        results.append(
            f"{tag} where the time goes in 1. HEAD: the walk itself takes {walk_only:.3f}s "
            "(in-process); the rest of the CLI run is interpreter start-up and imports"
        )
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=30, help="layers per child, scenario 1")
    parser.add_argument("--repos", type=int, default=20, help="repositories, scenario 2")
    parser.add_argument("--layer-kib", type=int, default=64, help="size of each layer")
    parser.add_argument(
        "--registry", choices=("2.8", "3", "both"), default="both", help="which registry"
    )
    args = parser.parse_args()
    byte_compile()
    for tool in ("curl", "jq", "skopeo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} not found (scripts/setup.sh installs it)")
    compile_bytecode()
    flavours: tuple[Flavour, ...] = FLAVOURS if args.registry == "both" else (args.registry,)
    print(
        f"scenario 1: 1 index, 3 children, {args.layers} layers each of ~{args.layer_kib} KiB\n"
        f"scenario 2: {args.repos} repositories x 1 index of 3 children x 4 layers\n"
        f"scenario 3: list {args.repos + 1} repositories and their tags\n"
        f"median of {args.runs} runs each, anchors measured in the same run\n"
    )
    results = []
    for flavour in flavours:
        if not registry_available(flavour):
            results.append(f"v{flavour}: skipped, {missing_reason(flavour)}")
            continue
        results.extend(bench_registry(flavour, args))
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
