"""Benchmark `shipsure probe` against its anchors, measured side by side in one run.

Registry: 200 repositories x 10 multi-arch tags (3 platforms; registry-facts §5 scale),
written by the synthetic generator into bench/out/ (kept; written again when its spec
changes) and served by the real registry (Debian's distribution 2.8).

    probe   vs  a sequential bash + curl + jq walk making the same requests (catalog, tags,
                every manifest GET, every blob HEAD once per repository)   target <= 0.1x
    probe   vs  the server's capacity for that request mix, measured with `ab -k -i`
                (HEAD of a blob) and `ab -k` (GET of a manifest), 16 connections:
                (requests / capacity) / probe wall time                   target >= 0.75
and the probe's requests and peak memory (max RSS of its process). Referrer lookups are
off on both sides (`--no-referrers`): distribution 2.8 has no referrers API.

The curl walk makes one request per curl process (~40 requests/s): on the whole registry it
takes minutes, so by default it walks the first --curl-repos repositories and its time for
the whole registry is scaled by requests (its cost is per request; it has no concurrency).
`--curl-repos 200` walks everything. The probe is also timed on the same sample.

`--tags 100000` instead measures memory with one repository of that many tags, served by a
small hostile-mock registry (each tag a distinct manifest; config and layer shared).

    .venv/bin/python bench/probe.py [--runs 3] [--curl-repos 20] [--tags 100000]

Measured on a 2-core machine shared with other work (absolute times swing 3x with load;
the ratios held): 20,402 requests (8,202 GET, 12,200 HEAD), probe/curl walk 0.057-0.058,
(requests / capacity) / probe wall 0.84-1.27, peak RSS 43 MiB, ~0.35-0.4 ms of probe CPU per
request; 100,000 tags: 100,005 requests, peak RSS 36 MiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from installed import byte_compile

from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, generate

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SHIPSURE = str(Path(sys.executable).with_name("shipsure"))
SPEC = SyntheticSpec(repositories=200, tags=10, platforms=3, layers=1, layer_size=4096, teams=8)
ACCEPT = (
    "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.list.v2+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)

# The anchor, as the team's CronJob did it but complete: sequential, one curl per request,
# jq to find repositories, tags, children and blobs; each blob HEADed once per repository.
CURL_WALK = r"""
set -eu
base="$1"; shift
n=0
for repo in "$@"; do
  declare -A seen=()
  tags=$(curl -sf "$base/v2/$repo/tags/list" | jq -r '.tags[]'); n=$((n+1))
  for tag in $tags; do
    top=$(curl -sf -H "Accept: $ACCEPT" "$base/v2/$repo/manifests/$tag"); n=$((n+1))
    for m in $(printf '%s' "$top" | jq -r '.manifests[]?.digest'); do
      [ -z "${seen[$m]:-}" ] || continue; seen[$m]=1
      body=$(curl -sf -H "Accept: $ACCEPT" "$base/v2/$repo/manifests/$m"); n=$((n+1))
      for b in $(printf '%s' "$body" | jq -r '.config.digest, .layers[].digest'); do
        [ -z "${seen[$b]:-}" ] || continue; seen[$b]=1
        curl -sf -o /dev/null -I "$base/v2/$repo/blobs/$b"; n=$((n+1))
      done
    done
  done
  unset seen
done
echo "$n"
"""


def tree() -> Path:
    root = OUT / "probe-1x"
    marker = root / ".complete"
    spec = dataclasses.asdict(SPEC)
    if not marker.exists() or json.loads(marker.read_text()).get("spec") != spec:
        if root.exists():
            shutil.rmtree(root)
        print(f"generating the registry storage into {root} ...", file=sys.stderr)
        made = generate(root, SPEC, record=False)
        marker.write_text(json.dumps({"files": made.files, "blobs": made.blobs, "spec": spec}))
    return root


CPU_SECONDS: list[float] = []  # user + system CPU of each timed process, in order


def timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) of the process (from wait4), and its stdout; its CPU
    seconds are appended to CPU_SECONDS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        CPU_SECONDS.append(usage.ru_utime + usage.ru_stime)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode not in (0, 1):
            message = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"bench: {cmd[0]} failed ({process.returncode}): {message}")
        return wall, usage.ru_maxrss, out.read().decode()


def probe_command(reg: str, repos: Sequence[str] = ()) -> list[str]:
    flags = [f"--repo={r}" for r in repos]
    return [SHIPSURE, "probe", "--no-referrers", "--format=json", *flags, reg]


def run_probe(reg: str, repos: Sequence[str] = ()) -> tuple[float, int, dict[str, object]]:
    wall, rss, out = timed(probe_command(reg, repos))
    return wall, rss, json.loads(out)


def ab_rate(url: str, *, head: bool, requests: int, accept: str | None = None) -> float:
    cmd = ["ab", "-q", "-k", "-c", "16", "-n", str(requests)]
    if head:
        cmd.append("-i")
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    result = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=600)
    match = re.search(r"Requests per second:\s+([\d.]+)", result.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", result.stdout)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", result.stdout)
    if not match or (failed and int(failed.group(1))) or non2xx:
        raise SystemExit(f"bench: ab failed on {url}: {result.stdout[-1500:]}{result.stderr}")
    return float(match.group(1))


def capacity(reg: SandboxRegistry, repo: str, requests: int) -> tuple[float, float]:
    """(HEAD blob rate, GET manifest rate) the server sustains, in requests per second."""
    import urllib.request

    base = reg.url
    with urllib.request.urlopen(f"{base}/v2/{repo}/tags/list") as answer:
        tag = json.loads(answer.read())["tags"][0]
    request = urllib.request.Request(
        f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(request) as answer:
        index = json.loads(answer.read())
    child = index["manifests"][0]["digest"]
    request = urllib.request.Request(
        f"{base}/v2/{repo}/manifests/{child}", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(request) as answer:
        blob = json.loads(answer.read())["layers"][-1]["digest"]
    head = ab_rate(f"{base}/v2/{repo}/blobs/{blob}", head=True, requests=requests)
    get = ab_rate(
        f"{base}/v2/{repo}/manifests/{child}", head=False, requests=requests, accept=ACCEPT
    )
    return head, get


def registry_benchmark(args: argparse.Namespace) -> None:
    for tool in ("curl", "jq", "ab"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} not found (scripts/setup.sh installs it)")
    root = tree()
    with SandboxRegistry(root=root) as reg:
        print(
            f"registry: {SPEC.repositories} repositories x {SPEC.tags} tags x "
            f"{SPEC.platforms} platforms (distribution 2.8, filesystem storage)"
        )
        runs = [run_probe(reg.host) for _ in range(args.runs)]
        cpu = statistics.median(CPU_SECONDS[-args.runs :])
        wall = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        doc = runs[0][2]
        meta = doc["probe"]
        assert isinstance(meta, dict)
        requests: dict[str, int] = meta["requests"]
        total = sum(requests.values())
        problems = [f for f in doc["findings"] if f["kind"] != "check-error"]  # type: ignore[index,union-attr]
        print(
            f"probe: {wall:.2f}s (median of {args.runs}), {total} requests "
            f"({requests['GET']} GET, {requests['HEAD']} HEAD), {total / wall:.0f} req/s, "
            f"peak RSS {rss / 1024:.0f} MiB, CPU {cpu:.1f}s ({1000 * cpu / total:.2f} ms/request), "
            f"{meta['tags_checked']}/{meta['tags']} tags, "
            f"{len(problems)} problem(s)"
        )

        catalog = json.loads(
            subprocess.run(
                ["curl", "-sf", f"{reg.url}/v2/_catalog?n=1000"], capture_output=True, text=True
            ).stdout
        )["repositories"]
        sample = catalog[: args.curl_repos]
        env = {**os.environ, "ACCEPT": ACCEPT}
        curl_wall, _, out = timed(["bash", "-c", CURL_WALK, "walk", reg.url, *sample], env=env)
        curl_requests = int(out.strip()) + 1  # + the catalog GET made above
        curl_rate = curl_requests / curl_wall
        sample_wall, _, sample_doc = run_probe(reg.host, sample)
        sample_meta = sample_doc["probe"]
        assert isinstance(sample_meta, dict)
        sample_requests = sum(sample_meta["requests"].values())
        curl_whole = total / curl_rate
        print(
            f"curl walk: {curl_wall:.2f}s for {len(sample)} repositories, {curl_requests} "
            f"requests ({curl_rate:.0f} req/s); the whole registry at that rate: "
            f"{curl_whole:.0f}s"
        )
        ratio = wall / curl_whole
        verdict = "ok" if ratio <= 0.1 else "MISSED"
        print(
            f"  probe / curl walk, whole registry: {ratio:.3f} (target <= 0.10: {verdict}); "
            f"same {len(sample)} repositories: probe {sample_wall:.2f}s for {sample_requests} "
            f"requests, ratio {sample_wall / curl_wall:.3f}"
        )

        head_rate, get_rate = capacity(reg, catalog[0], args.ab_requests)
        # Seconds the server needs for this mix at its measured rates (listings are GETs).
        needed = requests["HEAD"] / head_rate + requests["GET"] / get_rate
        efficiency = needed / wall
        verdict = "ok" if efficiency >= 0.75 else "MISSED"
        print(
            f"server capacity (ab -k, 16 connections): HEAD blob {head_rate:.0f} req/s, "
            f"GET manifest {get_rate:.0f} req/s; this mix needs {needed:.2f}s"
        )
        print(
            f"  (requests / capacity) / probe wall time: {efficiency:.2f} "
            f"(target >= 0.75: {verdict}; probe within {1 / efficiency:.2f}x of capacity)"
        )


# --- memory with 100,000 tags: a small registry mock in its own process ------------------


def serve_tags(count: int, port: int) -> None:
    """A registry with one repository of `count` tags, each a distinct OCI manifest whose
    config and layer are shared (so the probe's work is one GET per tag)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"layer" * 100

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def manifest(tag: str) -> bytes:
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest(layer),
                        "size": len(layer),
                    }
                ],
                "annotations": {"tag": tag},
            }
        ).encode()

    tags_body = json.dumps({"name": "big/repo", "tags": [f"t{i}" for i in range(count)]}).encode()
    blobs = {digest(config): config, digest(layer): layer}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: bytes, media_type: str, send: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 200 and "/blobs/" not in self.path and "/manifests/" in self.path:
                self.send_header("Docker-Content-Digest", digest(body))
            self.end_headers()
            if send:
                self.wfile.write(body)

        def route(self, send: bool) -> None:
            path = self.path.split("?")[0]
            if path == "/v2/":
                return self.answer(200, b"{}", "application/json", send)
            if path == "/v2/_catalog":
                return self.answer(200, b'{"repositories":["big/repo"]}', "application/json", send)
            if path == "/v2/big/repo/tags/list":
                return self.answer(200, tags_body, "application/json", send)
            if path.startswith("/v2/big/repo/manifests/"):
                tag = path.rsplit("/", 1)[1]
                return self.answer(
                    200, manifest(tag), "application/vnd.oci.image.manifest.v1+json", send
                )
            if path.startswith("/v2/big/repo/blobs/"):
                body = blobs.get(path.rsplit("/", 1)[1])
                if body is not None:
                    return self.answer(200, body, "application/octet-stream", send)
            return self.answer(404, b"404 page not found\n", "text/plain", send)

        def do_GET(self) -> None:
            self.route(True)

        def do_HEAD(self) -> None:
            self.route(False)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def tags_benchmark(args: argparse.Namespace) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-tags", str(args.tags), "--port", str(port)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the tags mock did not start") from None
                time.sleep(0.1)
        wall, rss, out = timed(probe_command(f"127.0.0.1:{port}"))
        meta = json.loads(out)["probe"]
        requests = sum(meta["requests"].values())
        print(
            f"{args.tags} tags in one repository (mock registry): {wall:.1f}s, {requests} "
            f"requests, {meta['tags_checked']}/{meta['tags']} tags checked, "
            f"peak RSS {rss / 1024:.0f} MiB"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--curl-repos", type=int, default=20)
    parser.add_argument("--ab-requests", type=int, default=5000)
    parser.add_argument("--tags", type=int, default=0, help="measure memory with N tags")
    parser.add_argument("--serve-tags", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    byte_compile()
    if args.serve_tags:
        serve_tags(args.serve_tags, args.port)
        return 0
    if args.tags:
        tags_benchmark(args)
        return 0
    registry_benchmark(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
