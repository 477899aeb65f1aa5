"""Benchmark `shipsure serve` under a push storm, with its anchor measured in the same run.

A real registry (distribution 2.8 or v3, in-memory blob cache) sends notifications to a
`shipsure serve` process (deploy/registry/notifications.yml). Several clients push images
at a set total rate (every `--index-every`th a two-platform index, whose children are
pushed by digest first); every `--broken-every`th push is a broken re-push: a new tag whose
layer the registry claims to have (HEAD 200 from its cache) although the data is gone, in
a repository of its own. Measured:

- latency: from the broken push's manifest PUT returning (the registry emits the event
  then) to the finding being visible on serve's /metrics, polled every 50 ms: median and
  p99. Target (the issue): p99 <= 5 s.
- serve's own histogram (event received -> result recorded), events queued, coalesced and
  dropped, push verifications by outcome; a clean push must give no finding.
- serve's CPU seconds during the storm and its peak memory (VmHWM).
- the anchor: the post-push check as a sequential bash + curl + jq walk doing the same
  verification work on the same references (GET every manifest, GET every blob and check
  its sha256, as serve's default deep push check does): wall time and CPU per push, vs
  serve's CPU per verified push.

    .venv/bin/python bench/serve.py [--rate 10] [--seconds 8] [--clients 4]
                                    [--broken-every 10] [--index-every 4] [--registry 2.8|3]
                                    [--max-pending N] [--anchor-pushes 20]

The default run is short (~80 pushes); raise --seconds and --rate for a real storm.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from installed import byte_compile

from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import (
    FLAVOUR_NAMES,
    Flavour,
    SandboxRegistry,
    missing_reason,
    registry_available,
)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
ACCEPT = (
    "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.list.v2+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)

# The anchor: the post-push check a pipeline runs, sequential, one curl per request; every
# blob is downloaded and its sha256 compared with its digest (serve's deep push check).
CURL_WALK = r"""
set -u
base="$1"; shift
bad=0
for ref in "$@"; do
  repo="${ref%%:*}"; tag="${ref#*:}"
  top=$(curl -sf -H "Accept: $ACCEPT" "$base/v2/$repo/manifests/$tag") ||
    { bad=$((bad+1)); continue; }
  manifests=$(printf '%s' "$top" | jq -r '.manifests[]?.digest')
  [ -n "$manifests" ] || manifests=TOP
  for m in $manifests; do
    if [ "$m" = TOP ]; then body="$top"; else
      body=$(curl -sf -H "Accept: $ACCEPT" "$base/v2/$repo/manifests/$m") ||
        { bad=$((bad+1)); continue; }; fi
    for b in $(printf '%s' "$body" | jq -r '.config.digest, .layers[].digest'); do
      got=$(curl -sf "$base/v2/$repo/blobs/$b" | sha256sum | cut -d' ' -f1)
      [ "sha256:$got" = "$b" ] || bad=$((bad+1))
    done
  done
done
echo "$bad"
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def notifications(port: int) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "deploy" / "registry" / "notifications.yml").read_text())
    (endpoint,) = doc["notifications"]["endpoints"]
    endpoint["url"] = f"http://127.0.0.1:{port}/notifications"
    endpoint["headers"] = {"Authorization": [f"Bearer {TOKEN}"]}
    endpoint["backoff"] = "1s"
    section: dict[str, Any] = doc["notifications"]
    return section


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def series(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match:
            have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def start_serve(
    registry: str, port: int, workdir: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    token = workdir / "token"
    token.write_text(TOKEN)
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipsure",
            "serve",
            registry,
            "--listen",
            f"127.0.0.1:{port}",
            "--state",
            str(workdir / "state.sqlite"),
            "--notifications-token-file",
            str(token),
            "--probe-interval",
            "0",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("bench: serve did not start; see " + str(workdir / "serve.log"))


def bench(flavour: Flavour, args: argparse.Namespace) -> None:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="shipsure-bench-serve-"))
    total = int(args.rate * args.seconds)
    broken_slots = [
        n
        for n in range(total)
        if args.broken_every and n % args.broken_every == args.broken_every - 1
    ]
    with SandboxRegistry(
        flavour=flavour, blob_cache="inmemory", extra_config={"notifications": notifications(port)}
    ) as reg:
        serve = start_serve(reg.host, port, workdir, ["--max-pending", str(args.max_pending)])
        url = f"http://127.0.0.1:{port}"
        try:
            # Set-up: a clean base image in each broken push's repository, verified first.
            bases = {
                n: images.push_image(
                    reg.url, f"bench/broken-{n}", "base", layers=2, layer_size=args.layer_kib * 1024
                )
                for n in broken_slots
            }
            deadline = time.monotonic() + 120
            while series(
                httpx.get(f"{url}/metrics").text, "shipsure_serve_push_verifications_total"
            ) < len(bases):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: set-up pushes were not verified")
                time.sleep(0.1)
            before = httpx.get(f"{url}/metrics").text
            cpu_before = cpu_seconds(serve.pid)
            pushed_at: dict[str, float] = {}
            seen_at: dict[str, float] = {}
            refs: list[str] = []
            stop_polling = threading.Event()

            def poll() -> None:
                while not stop_polling.is_set():
                    text = httpx.get(f"{url}/metrics", timeout=10).text
                    now = time.monotonic()
                    for repo in re.findall(
                        r'shipsure_serve_findings\{[^}]*repository="(bench/broken-\d+)"', text
                    ):
                        seen_at.setdefault(repo, now)
                    time.sleep(0.05)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            started = time.monotonic()
            lock = threading.Lock()

            def client(c: int) -> None:
                with images.open_client(reg.url) as http:
                    for n in range(c, total, args.clients):
                        due = started + n / args.rate
                        time.sleep(max(0.0, due - time.monotonic()))
                        if n in bases:
                            repo = f"bench/broken-{n}"
                            base = bases[n]
                            faults.remove_blob_data(reg.root, base.layer_digests[0])
                            images.push_image(
                                reg.url,
                                repo,
                                "bad",
                                layers=1,
                                shared_layers=[f"{repo}:base/0"],
                                layer_size=args.layer_kib * 1024,
                                client=http,
                            )
                            with lock:
                                pushed_at[repo] = time.monotonic()
                                refs.append(f"{repo}:bad")
                        else:
                            repo = f"bench/c{c}-{n % 10}"
                            if args.index_every and n % args.index_every == 0:
                                # A two-platform index: children by digest, then the index.
                                images.push_index(
                                    reg.url,
                                    repo,
                                    f"t{n}",
                                    platforms=("linux/amd64", "linux/arm64"),
                                    layers=1,
                                    layer_size=args.layer_kib * 1024,
                                    client=http,
                                )
                            else:
                                images.push_image(
                                    reg.url,
                                    repo,
                                    f"t{n}",
                                    layers=2,
                                    layer_size=args.layer_kib * 1024,
                                    client=http,
                                )
                            with lock:
                                refs.append(f"{repo}:t{n}")

            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            storm_seconds = time.monotonic() - started
            deadline = time.monotonic() + 120
            idle_since, last_count = time.monotonic(), -1.0
            while True:
                text = httpx.get(f"{url}/metrics").text
                pending = series(text, "shipsure_serve_queue_pending")
                count = series(text, "shipsure_serve_push_verifications_total")
                if count != last_count:
                    idle_since, last_count = time.monotonic(), count
                found_all = set(pushed_at) <= set(seen_at)
                # Dropped pushes are never verified: stop once the queue is empty and idle.
                idle = pending == 0 and time.monotonic() - idle_since > 3
                if (pending == 0 and found_all) or idle or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            stop_polling.set()
            poller.join(5)
            cpu_serve = cpu_seconds(serve.pid) - cpu_before
            peak = peak_rss_mib(serve.pid)
            after = httpx.get(f"{url}/metrics").text
            findings = httpx.get(f"{url}/api/findings").json()["findings"]
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)
        # The anchor on the same references, after the storm (same registry, same data).
        env = {**os.environ, "ACCEPT": ACCEPT}
        # An evenly spread sample: the comparison is per push.
        sample = refs[:: max(1, len(refs) // max(1, args.anchor_pushes))][: args.anchor_pushes]
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", CURL_WALK, "walk", reg.url, *sample],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        curl_wall = time.monotonic() - t0
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        curl_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
            usage_after.ru_stime - usage_before.ru_stime
        )
        curl_bad = int(result.stdout.strip() or -1)

    latencies = [seen_at[r] - pushed_at[r] for r in pushed_at if r in seen_at]
    verified = series(after, "shipsure_serve_push_verifications_total") - series(
        before, "shipsure_serve_push_verifications_total"
    )
    clean_findings = [f for f in findings if not str(f["repository"]).startswith("bench/broken-")]
    hist_sum = series(after, "shipsure_serve_push_verification_seconds_sum") - series(
        before, "shipsure_serve_push_verification_seconds_sum"
    )
    hist_count = series(after, "shipsure_serve_push_verification_seconds_count") - series(
        before, "shipsure_serve_push_verification_seconds_count"
    )
    p99 = percentile(latencies, 0.99)
    all_found = len(latencies) == len(pushed_at)
    print(
        f"== {FLAVOUR_NAMES[flavour]}: {total} pushes by {args.clients} clients at "
        f"{args.rate:g}/s (took {storm_seconds:.1f} s), {len(pushed_at)} broken, layers "
        f"{args.layer_kib} KiB"
    )
    if latencies:
        print(
            f"  broken push -> finding on /metrics: median {statistics.median(latencies):.2f} s,"
            f" p99 {p99:.2f} s, max {max(latencies):.2f} s; {len(latencies)}/{len(pushed_at)}"
            f" found (target p99 <= 5 s: {'met' if p99 <= 5 and all_found else 'NOT met'})"
        )
    mean = hist_sum / max(1.0, hist_count)
    print(f"  serve's own event -> recorded: mean {mean:.3f} s over {hist_count:.0f} pushes")
    for name in ("queued", "coalesced", "dropped", "ignored"):
        delta = series(after, "shipsure_serve_events_total", result=name) - series(
            before, "shipsure_serve_events_total", result=name
        )
        print(f"  events {name}: {delta:.0f}")
    print(f"  findings on clean pushes: {len(clean_findings)} (must be 0)")
    serve_per_push = cpu_serve / max(1.0, verified)
    print(
        f"  serve CPU: {cpu_serve:.2f} s for {verified:.0f} verifications = "
        f"{1000 * serve_per_push:.1f} ms per push; peak memory (VmHWM) {peak:.0f} MiB"
    )
    walked = max(1, len(sample))
    per_push = curl_cpu / walked
    print(
        f"  anchor, sequential curl walk (deep) of {len(sample)} of the same pushes: "
        f"{curl_wall / walked:.3f} s wall and {1000 * per_push:.1f} ms CPU per push, "
        f"{curl_bad} bad objects"
    )
    ratio = serve_per_push / per_push if per_push else float("nan")
    print(f"  serve CPU per push / curl walk CPU per push: {ratio:.2f}")
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="pushes per second, all clients")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the storm")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--broken-every", type=int, default=10)
    parser.add_argument(
        "--index-every", type=int, default=4, help="every Nth clean push is a 2-platform index"
    )
    parser.add_argument("--layer-kib", type=int, default=16)
    parser.add_argument("--max-pending", type=int, default=10_000)
    parser.add_argument("--registry", choices=("2.8", "3"), default="2.8")
    parser.add_argument(
        "--anchor-pushes", type=int, default=20, help="pushes the curl walk re-checks"
    )
    args = parser.parse_args()
    byte_compile()
    for tool in ("curl", "jq", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} not found (scripts/setup.sh installs it)")
    if not registry_available(args.registry):
        raise SystemExit(f"bench: {missing_reason(args.registry)}")
    bench(args.registry, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
