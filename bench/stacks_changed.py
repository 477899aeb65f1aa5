"""Benchmark: `shipsure stacks changed` on 500 stacks and 5,000 commits.

Generates (once; cached under bench/out/) a git repository with 500 stacks sourcing 25
shared modules (some modules source other modules) and 5,000 commits made with
`git fast-import`, then times, in the same run:

* the anchor: `git diff --name-only HEAD~100 HEAD` (what the old CI glue ran);
* `shipsure stacks changed --base HEAD~100 --format json` as a fresh process (Python
  start-up included), which also follows modules and globals.

Prints the median of each and the ratio. Target: shipsure under 1 s.

    .venv/bin/python bench/stacks_changed.py [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from installed import byte_compile

STACKS = 500
MODULES = 25
COMMITS = 5000
BACK = 100
SEED = 20240501
OUT = Path(__file__).parent / "out" / "stacks-500x5000"
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def stack_file(i: int, module: int, revision: int) -> str:
    return (
        f'module "shared" {{\n  source = "../../modules/m{module:02d}"\n  name   = "s{i}"\n}}\n'
        f'module "remote" {{\n  source = "git::https://example.com/x.git?ref=v{revision}"\n}}\n'
        f'output "id" {{ value = module.shared.id }}\n'
    )


def module_file(m: int, revision: int) -> str:
    text = f'variable "name" {{ type = string }}\noutput "id" {{ value = "{m}-{revision}" }}\n'
    if m % 5 != 0:  # every module except m00, m05, ... sources its group's base module
        base = m - m % 5
        text += f'module "base" {{\n  source = "../m{base:02d}"\n}}\n'
    return text


def data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


def generate(repo: Path) -> None:
    rng = random.Random(SEED)
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=ENV)
    stream: list[bytes] = []
    when = 1_700_000_000

    def commit(n: int, files: dict[str, str]) -> None:
        nonlocal when
        when += 60
        stream.append(b"commit refs/heads/main\nmark :%d\n" % n)
        stream.append(b"committer bench <bench@example.invalid> %d +0000\n" % when)
        stream.append(data(f"change {n}"))
        if n > 1:
            stream.append(b"from :%d\n" % (n - 1))
        for path, text in files.items():
            stream.append(f"M 644 inline {path}\n".encode() + data(text))

    first = {"terragrunt.hcl": "remote_state {}\n", "README.md": "infra\n"}
    first.update({f"modules/m{m:02d}/main.tf": module_file(m, 0) for m in range(MODULES)})
    first.update({f"stacks/s{i:03d}/main.tf": stack_file(i, i % MODULES, 0) for i in range(STACKS)})
    commit(1, first)
    for n in range(2, COMMITS + 1):
        files: dict[str, str] = {}
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.05:
                m = rng.randrange(MODULES)
                files[f"modules/m{m:02d}/main.tf"] = module_file(m, n)
            else:
                i = rng.randrange(STACKS)
                files[f"stacks/s{i:03d}/main.tf"] = stack_file(i, i % MODULES, n)
        commit(n, files)
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet"],
        input=b"".join(stream),
        check=True,
        env=ENV,
    )
    subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard", "main"], check=True)


def timed(cmd: list[str], runs: int) -> tuple[float, bytes]:
    samples: list[float] = []
    out = b""
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, env=ENV).stdout
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), out


def _in_process(base: str) -> float:
    from shipsure.cli.main import main as shipsure_main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        shipsure_main(["stacks", "changed", "--repo", str(OUT), "--base", base])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    byte_compile()
    if not (OUT / ".git").is_dir():
        print(f"generating {STACKS} stacks x {COMMITS} commits in {OUT} ...", file=sys.stderr)
        start = time.perf_counter()
        generate(OUT)
        print(f"generated in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    base = f"HEAD~{BACK}"
    anchor, diff = timed(["git", "-C", str(OUT), "diff", "--name-only", base, "HEAD"], args.runs)
    cmd = [sys.executable, "-m", "shipsure", "stacks", "changed", "--repo", str(OUT)]
    ours, out = timed([*cmd, "--base", base, "--format", "json"], args.runs)
    result = json.loads(out)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*cmd, "--base", base], check=True, capture_output=True, env=ENV)
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    in_process = statistics.median(_in_process(base) for _ in range(args.runs))
    direct = {line.split("/")[1] for line in diff.decode().split() if line.startswith("stacks/")}
    print(f"repository: {STACKS} stacks, {MODULES} modules, {COMMITS} commits; base {base}")
    print(f"changed files since base: {len(diff.split())}; stacks touched directly: {len(direct)}")
    print(f"stacks changed (modules followed): {len(result['stacks'])}; all: {result['all']}")
    print(f"anchor  git diff --name-only:     {anchor * 1000:8.1f} ms (median of {args.runs})")
    print(f"shipsure stacks changed (process): {ours * 1000:8.1f} ms (median of {args.runs})")
    print(f"shipsure stacks changed (in-process, imports excluded): {in_process * 1000:8.1f} ms")
    print(f"shipsure process CPU time (user+sys, one run): {cpu * 1000:8.1f} ms")
    print(f"ratio shipsure / git diff: {ours / anchor:.1f}x; target < 1 s: "
          f"{'met' if ours < 1.0 else 'MISSED'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
