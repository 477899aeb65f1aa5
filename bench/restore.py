"""Benchmark `shipsure restore` against the field's copy tools, measured in one run.

A source registry and a target registry hold the same storage (written straight to disk:
N repositories x M multi-arch tags, 3 platforms each). Two kinds of damage, each put back
before every tool runs, so every tool starts from the same damage and the same source:

1. the GC incident: `garbage-collect --delete-untagged` broke every tag of the target
   (registry-facts §1);
2. a stale blob cache: one layer per tag deleted on disk after the registry's in-memory
   blob-descriptor cache saw it, so HEAD answers 200 and a GET fails (registry-facts §3).

Tools, each copying every tag from the source to the target:

- `shipsure restore --all TARGET --from SOURCE --apply`
- `skopeo copy --all --preserve-digests` of every tag (one process per tag)
- `crane copy` of every tag, and `regctl image copy --force-recursive`, when .tools/bin
  has them (`scripts/peers.sh` builds them)

Each tool talks to the target through a byte-counting TCP proxy, so "bytes sent" is what it
pushed (request headers and bodies) to the target. Afterwards `shipsure verify --deep`
says whether the target serves every tag again. Times are wall clock, one run each (these
2-core machines are noisy: compare ratios within one run).

    .venv/bin/python bench/restore.py                        # 10 repositories x 3 tags
    .venv/bin/python bench/restore.py --repos 200 --tags 10  # the issue's scale (slow)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from installed import byte_compile

from shipsure.sandbox.registry import SandboxRegistry, registry_available
from shipsure.sandbox.synthetic import SyntheticSpec, generate

SHIPSURE = str(Path(sys.executable).with_name("shipsure"))
TOOLS = Path(__file__).resolve().parent.parent / ".tools" / "bin"


class CountingProxy:
    """127.0.0.1:PORT -> the target registry, counting the bytes clients send."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.sent = 0
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            for src, dst, count in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=(src, dst, count), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    with self._lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing = True
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=5)


@dataclass
class Result:
    tool: str
    seconds: float
    sent: int
    verifies: bool
    note: str = ""


def run(cmd: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)


def reset(target: SandboxRegistry, storage: Path) -> None:
    """Put a copy of `storage` in place and restart (which also empties any cache)."""
    target.stop()
    shutil.rmtree(target.root)
    shutil.copytree(storage, target.root)
    target.restart()


def verifies(target: SandboxRegistry, refs: Sequence[str]) -> bool:
    full = [f"{target.host}/{r}" for r in refs]
    return run([SHIPSURE, "verify", "--deep", "--no-referrers", *full]).returncode == 0


def per_tag(make: Callable[[str], list[str]], refs: Sequence[str], env: dict[str, str]) -> str:
    failures = 0
    last = ""
    for ref in refs:
        done = run(make(ref), env)
        if done.returncode != 0:
            failures += 1
            lines = done.stderr.strip().splitlines()
            last = lines[-1] if lines else f"exit {done.returncode}"
    return f"{failures} of {len(refs)} copies failed: {last[:120]}" if failures else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--tags", type=int, default=3)
    parser.add_argument("--layer-kib", type=int, default=16)
    args = parser.parse_args()
    byte_compile()
    if not registry_available() or shutil.which("skopeo") is None:
        print("bench: needs docker-registry and skopeo (scripts/setup.sh)", file=sys.stderr)
        return 3
    spec = SyntheticSpec(
        repositories=args.repos, tags=args.tags, platforms=3, layer_size=args.layer_kib * 1024
    )
    with tempfile.TemporaryDirectory(prefix="shipsure-bench-restore-") as scratch:
        work = Path(scratch)
        storage = generate(work / "source", spec)
        generate(work / "intact", spec)
        refs = [f"{t.repository}:{t.tag}" for t in storage.tags]
        print(
            f"{args.repos} repositories x {args.tags} tags (3 platforms): {storage.blobs} blobs, "
            f"{storage.bytes / 1e6:.1f} MB on each registry"
        )
        with SandboxRegistry(work / "source") as source:
            print("\nthe GC incident: garbage-collect --delete-untagged on the target")
            damaged = work / "damaged"
            shutil.copytree(work / "intact", damaged)
            with SandboxRegistry(damaged) as broken:
                gc = broken.garbage_collect(delete_untagged=True)
            if gc.returncode != 0:
                print(f"bench: garbage-collect failed: {gc.stderr[-500:]}", file=sys.stderr)
                return 3
            with SandboxRegistry(work / "target") as target:
                incident = bench_tools(target, source, lambda: reset(target, damaged), refs, work)
            print_table(incident)

            stale = [t.children[0].layers[-1] for t in storage.tags]
            print(
                f"\na stale blob cache: {len(stale)} layers deleted on disk after the "
                "registry's in-memory cache saw them (HEAD 200, GET fails)"
            )
            with SandboxRegistry(work / "cached", blob_cache="inmemory") as cached:

                def prepare() -> None:
                    reset(cached, work / "intact")
                    with httpx.Client(timeout=30) as http:
                        for tag, digest in zip(storage.tags, stale, strict=True):
                            url = f"{cached.url}/v2/{tag.repository}/blobs/{digest}"
                            http.head(url).raise_for_status()
                    for digest in stale:
                        (cached.root / blob_path(digest)).unlink(missing_ok=True)

                print_table(bench_tools(cached, source, prepare, refs, work))
    return 0


def blob_path(digest: str) -> str:
    hex_ = digest.split(":", 1)[1]
    return f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data"


def bench_tools(
    target: SandboxRegistry,
    source: SandboxRegistry,
    prepare: Callable[[], None],
    refs: Sequence[str],
    work: Path,
) -> list[Result]:
    env = {**os.environ, "HOME": str(work / "home")}
    (work / "home").mkdir(exist_ok=True)
    tools: list[tuple[str, Callable[[str], str]]] = [
        (
            "shipsure restore",
            lambda proxy: restore_all(proxy, source.host, work, env),
        ),
        (
            "skopeo copy --all --preserve-digests",
            lambda proxy: per_tag(
                lambda ref: [
                    "skopeo",
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--quiet",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"docker://{source.host}/{ref}",
                    f"docker://{proxy}/{ref}",
                ],
                refs,
                env,
            ),
        ),
    ]
    crane = TOOLS / "crane"
    if crane.exists():
        tools.append(
            (
                "crane copy",
                lambda proxy: per_tag(
                    lambda ref: [
                        str(crane),
                        "copy",
                        "--insecure",
                        f"{source.host}/{ref}",
                        f"{proxy}/{ref}",
                    ],
                    refs,
                    env,
                ),
            )
        )
    regctl = TOOLS / "regctl"
    if regctl.exists():

        def regctl_copy(proxy: str) -> str:
            for host in (source.host, proxy):
                run([str(regctl), "registry", "set", host, "--tls", "disabled"], env)
            return per_tag(
                lambda ref: [
                    str(regctl),
                    "image",
                    "copy",
                    "--force-recursive",
                    f"{source.host}/{ref}",
                    f"{proxy}/{ref}",
                ],
                refs,
                env,
            )

        tools.append(("regctl image copy --force-recursive", regctl_copy))
    results = []
    for name, action in tools:
        prepare()
        proxy = CountingProxy(target.port)
        start = time.perf_counter()
        try:
            note = action(proxy.host)
        finally:
            seconds = time.perf_counter() - start
            proxy.close()
        results.append(Result(name, seconds, proxy.sent, verifies(target, refs), note))
        print(f"  {name}: {seconds:.2f} s", flush=True)
    return results


def restore_all(proxy: str, source: str, work: Path, env: dict[str, str]) -> str:
    state = work / "restore-state"
    done = run(
        [
            SHIPSURE,
            "restore",
            "--all",
            proxy,
            "--from",
            source,
            "--apply",
            "--state-dir",
            str(state),
        ],
        env,
    )
    shutil.rmtree(state, ignore_errors=True)
    return "" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-200:]}"


def print_table(results: Sequence[Result]) -> None:
    anchor = results[0]
    print()
    print(f"{'tool':40} {'wall s':>8} {'x restore':>10} {'MB sent':>9} {'x restore':>10}  verifies")
    for r in results:
        time_ratio = r.seconds / anchor.seconds if anchor.seconds else float("nan")
        byte_ratio = r.sent / anchor.sent if anchor.sent else float("nan")
        print(
            f"{r.tool:40} {r.seconds:8.2f} {time_ratio:10.2f} {r.sent / 1e6:9.2f} "
            f"{byte_ratio:10.2f}  {'yes' if r.verifies else 'NO'}"
        )
        if r.note:
            print(f"{'':40} note: {r.note}")


if __name__ == "__main__":
    raise SystemExit(main())
