"""`make demo`: the garbage-collection incident, reproduced on a real registry, and caught.

1. Start a throw-away distribution 2.8 registry and push multi-arch images the way
   `docker buildx --push` does (an OCI index with attestations, a Docker manifest list,
   an SBOM attached as a referrer).
2. `shipsure verify` passes.
3. Run the weekly job that caused the incident: `registry garbage-collect --delete-untagged`.
4. The check everyone had, a HEAD of the tag, still answers 200.
5. `shipsure verify` reports every child manifest, config and layer that is gone, and
   `shipsure scan` shows the same damage on disk, with what can be re-linked.

Exits 0 when the story holds (HEAD passes, verify catches every broken child), 1 otherwise.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from shipsure import mediatypes as mt
from shipsure.sandbox import images
from shipsure.sandbox.registry import SandboxRegistry

SHIPSURE = str(Path(sys.executable).with_name("shipsure"))
BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}", flush=True)


def shell(*cmd: str, show: str | None = None) -> subprocess.CompletedProcess[str]:
    shown = show or " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.stdout:
        print(result.stdout.rstrip())
    if result.stderr:
        print(result.stderr.rstrip(), file=sys.stderr)
    print(f"(exit {result.returncode})", flush=True)
    return result


def main() -> int:
    with SandboxRegistry() as reg:
        step(f"A throw-away registry (distribution 2.8.2) at {reg.url}, storage {reg.root}")
        app = images.push_index(reg.url, "team/app", "latest", layers=2, attestations=True)
        base = images.push_index(reg.url, "team/base", "3", kind="docker", layers=2)
        images.push_artifact(reg.url, "team/app", app)
        refs = [f"{reg.host}/team/app:latest", f"{reg.host}/team/base:3"]
        print(
            f"pushed team/app:latest  OCI index {app.digest[:19]}… with 3 platforms + attestations"
        )
        print(f"pushed team/base:3      Docker manifest list {base.digest[:19]}… with 3 platforms")
        print("attached an SBOM to team/app:latest (OCI referrers tag fallback)")

        step("Right after the push, shipsure verify walks everything a pull needs")
        clean = shell(SHIPSURE, "verify", *refs, show="shipsure verify " + " ".join(refs))

        step("The weekly job: registry garbage-collect --delete-untagged")
        gc = reg.garbage_collect(delete_untagged=True)
        deleted = [ln for ln in gc.stdout.splitlines() if "eligible for deletion" in ln]
        print(f"$ docker-registry garbage-collect --delete-untagged {reg.config_path.name}")
        print(f"(exit {gc.returncode}; {len(deleted)} manifests and blobs deleted)")

        step("The check everyone had: a HEAD of the tag")
        heads_ok = True
        with httpx.Client(timeout=10) as http:
            for repo, tag in (("team/app", "latest"), ("team/base", "3")):
                head = http.head(
                    f"{reg.url}/v2/{repo}/manifests/{tag}", headers={"Accept": mt.MANIFEST_ACCEPT}
                )
                digest = head.headers.get("Docker-Content-Digest", "")
                print(f"HEAD /v2/{repo}/manifests/{tag} -> {head.status_code} {digest[:19]}…")
                heads_ok &= head.status_code == 200

        step("shipsure verify after the garbage collection")
        broken = shell(SHIPSURE, "verify", *refs, show="shipsure verify " + " ".join(refs))
        as_json = subprocess.run(
            [SHIPSURE, "verify", "--format", "json", *refs], capture_output=True, text=True
        )
        findings = json.loads(as_json.stdout)["findings"]

        step("shipsure scan: the same damage, seen on disk (counted by kind here)")
        print(f"$ shipsure scan --format json {reg.root}")
        scan = subprocess.run(
            [SHIPSURE, "scan", "--format", "json", str(reg.root)], capture_output=True, text=True
        )
        by_kind = Counter(f["kind"] for f in json.loads(scan.stdout)["findings"])
        for kind, count in sorted(by_kind.items()):
            print(f"  {count:3}  {kind}")
        print(
            f"(exit {scan.returncode}; `shipsure scan` in text shows each with the tags it breaks)"
        )

    missing = {f["digest"] for f in findings if f["kind"] == "manifest-missing"}
    children = {c.digest for c in (*app.children, *app.attestations, *base.children)}
    caught = children <= missing
    step("Summary")
    print(f"tag HEAD answered 200 for both tags:         {'yes' if heads_ok else 'NO'}")
    print(f"verify before GC:                            exit {clean.returncode}")
    print(
        f"verify after GC:                             exit {broken.returncode}, "
        f"{len(findings)} findings"
    )
    print(
        f"every child manifest reported missing:       {'yes' if caught else 'NO'} "
        f"({len(children & missing)}/{len(children)})"
    )
    ok = heads_ok and clean.returncode == 0 and broken.returncode == 1 and caught
    print("the demo story holds" if ok else "the demo story did NOT hold")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
