"""How much client CPU the registry client spends per request, against plain http.client.

Starts a sandbox registry, pushes ~200 blobs, then HEADs them N times from 16 threads:
  http.client     one keep-alive connection per thread (the anchor: registry-facts §5)
  httpx           one shared httpx.Client, no auth, no retries (that library's own floor)
  shipsure        open_registry(...).head_blob (auth flow, retries, semaphore, checks) over
                  its default wire: http.client keep-alive connections, no httpx at all
  shipsure/httpx  the same over httpx's own transport (httpcore + h11) through the adapter
                  the client keeps for proxies and tests, for comparison
and prints req/s and client CPU per request for each, and the ratios against the anchor.
The registry shares the machine's cores with the client, so every client cycle is taken
from the server: CPU per request is the figure that matters; compare ratios, not times.

    .venv/bin/python bench/client.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from collections.abc import Callable, Sequence

import httpx

from shipsure.model import Digest
from shipsure.registry import open_registry
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry

THREADS = 16
IMAGES = 100  # a config and a layer each: 200 blobs

Blob = tuple[str, str]  # (repository, digest)


def seed(registry: SandboxRegistry) -> list[Blob]:
    blobs: list[Blob] = []
    with images.open_client(registry.url) as client:
        for i in range(IMAGES):
            repo = f"bench/app{i % 10}"
            image = images.push_image(
                registry.url, repo, f"v{i}", layers=1, layer_size=512, client=client
            )
            blobs.extend((repo, digest) for digest in image.blob_digests)
    return blobs


def run_threads(work: Callable[[int], None], threads: int) -> None:
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def share(blobs: Sequence[Blob], n: int, worker: int, threads: int) -> list[Blob]:
    return [blobs[i % len(blobs)] for i in range(worker, n, threads)]


def with_http_client(port: int, blobs: Sequence[Blob], n: int) -> None:
    def work(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for repo, digest in share(blobs, n, worker, THREADS):
                connection.request("HEAD", f"/v2/{repo}/blobs/{digest}")
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status
        finally:
            connection.close()

    run_threads(work, THREADS)


def with_httpx(url: str, blobs: Sequence[Blob], n: int) -> None:
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(base_url=url, limits=limits, timeout=30) as client:

        def work(worker: int) -> None:
            for repo, digest in share(blobs, n, worker, THREADS):
                response = client.head(f"/v2/{repo}/blobs/{digest}")
                assert response.status_code == 200, response.status_code

        run_threads(work, THREADS)


def with_shipsure(
    host: str, blobs: Sequence[Blob], n: int, transport: httpx.BaseTransport | None = None
) -> None:
    parsed = [(repo, Digest.parse(digest)) for repo, digest in blobs]
    with open_registry(host, concurrency=THREADS, transport=transport) as registry:

        def work(worker: int) -> None:
            for repo, digest in share(parsed, n, worker, THREADS):
                registry.head_blob(repo, digest)

        run_threads(work, THREADS)


def measure(run: Callable[[], None], n: int) -> tuple[float, float]:
    """(requests per second, client CPU milliseconds per request)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="HEADs per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per client (median)")
    args = parser.parse_args()
    n = args.requests
    with SandboxRegistry() as registry:
        blobs = seed(registry)
        clients: dict[str, Callable[[], None]] = {
            "http.client": lambda: with_http_client(registry.port, blobs, n),
            "httpx": lambda: with_httpx(registry.url, blobs, n),
            "shipsure": lambda: with_shipsure(registry.host, blobs, n),
            "shipsure/httpx": lambda: with_shipsure(
                registry.host,
                blobs,
                n,
                httpx.HTTPTransport(
                    limits=httpx.Limits(max_connections=THREADS + 2),
                ),
            ),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for warm_up in clients.values():
            warm_up()  # connections, code paths
        for _ in range(args.rounds):
            for name, run in clients.items():  # interleaved, so drift hits all alike
                results[name].append(measure(run, n))
    print(f"{len(blobs)} blobs, {n} HEADs x {args.rounds} rounds, {THREADS} threads (medians)")
    anchor_rate = statistics.median(r for r, _ in results["http.client"])
    anchor_cpu = statistics.median(c for _, c in results["http.client"])
    print(f"{'client':<14} {'req/s':>8} {'CPU ms/req':>11} {'req/s ratio':>12} {'CPU ratio':>10}")
    for name, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"{name:<14} {rate:>8.0f} {cpu:>11.3f} {rate / anchor_rate:>12.2f} "
            f"{cpu / anchor_cpu:>10.2f}"
        )


if __name__ == "__main__":
    main()
