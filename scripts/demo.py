"""`make demo`: the garbage-collection incident, reproduced on a real registry, and caught.

1. Start a throw-away distribution 2.8 registry and push multi-arch images the way
   `docker buildx --push` does (an OCI index with attestations, a Docker manifest list,
   an SBOM attached as a referrer).
2. `shipsure verify` passes.
3. `shipsure gc-check` predicts the weekly GC: exit 1, naming every tag it will break.
4. Run the weekly job that caused the incident: `registry garbage-collect --delete-untagged`.
5. The check everyone had, a HEAD of the tag, still answers 200.
6. `shipsure verify` reports every child manifest, config and layer that is gone, and
   `shipsure scan` shows the same damage on disk, with what can be re-linked.
7. `shipsure restore --from` a second registry (seeded with the same images before the
   GC, as a mirror or a second site would be) plans exactly what is missing, pushes it with
   `--apply`, and `verify --deep` and a real `skopeo copy --all` pass again with the
   original digests; a second restore has nothing to do.

Exits 0 when the story holds (gc-check names the tags beforehand, HEAD passes, verify
catches every broken child, restore brings every tag back with its digests), 1 otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
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
    # The venv's path to shipsure is shown as the command a reader types.
    words = ["shipsure" if c == SHIPSURE else shlex.quote(c) for c in cmd]
    shown = show or " ".join(words)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.stdout:
        print(result.stdout.rstrip())
    if result.stderr:
        print(result.stderr.rstrip(), file=sys.stderr)
    print(f"(exit {result.returncode})", flush=True)
    return result


def push_images(url: str) -> tuple[images.PushedIndex, images.PushedIndex]:
    """The demo's images; the same content (and digests) on every registry."""
    app = images.push_index(url, "team/app", "latest", layers=2, attestations=True)
    base = images.push_index(url, "team/base", "3", kind="docker", layers=2)
    images.push_artifact(url, "team/app", app)
    return app, base


def main() -> int:
    with SandboxRegistry() as reg, SandboxRegistry() as mirror:
        step(f"A throw-away registry (distribution 2.8.2) at {reg.url}, storage {reg.root}")
        app, base = push_images(reg.url)
        refs = [f"{reg.host}/team/app:latest", f"{reg.host}/team/base:3"]
        print(
            f"pushed team/app:latest  OCI index {app.digest[:19]}… with 3 platforms + attestations"
        )
        print(f"pushed team/base:3      Docker manifest list {base.digest[:19]}… with 3 platforms")
        print("attached an SBOM to team/app:latest (OCI referrers tag fallback)")

        step("Right after the push, shipsure verify walks everything a pull needs")
        clean = shell(SHIPSURE, "verify", *refs, show="shipsure verify " + " ".join(refs))

        step(f"A second registry (a mirror, another site) at {mirror.url}, same images")
        mirrored = push_images(mirror.url)
        print(f"pushed the same images: digests equal: {mirrored == (app, base)}")

        step("Before the weekly job: shipsure gc-check predicts what it will break")
        predicted = shell(
            SHIPSURE,
            "gc-check",
            "--registry-version",
            "2",
            "--delete-untagged",
            str(reg.root),
            show=f"shipsure gc-check --registry-version 2 --delete-untagged {reg.root}",
        )
        flags = ["--registry-version", "2", "--delete-untagged", "--format", "json"]
        as_json = subprocess.run(
            [SHIPSURE, "gc-check", *flags, str(reg.root)], capture_output=True, text=True
        )
        doomed = {
            f"{f['repository']}:{f['reference']}"
            for f in json.loads(as_json.stdout)["findings"]
            if f["kind"] == "gc-breaks-tag"
        }
        print(f"tags gc-check says this GC breaks: {', '.join(sorted(doomed)) or 'none'}")

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

        restored = restore_chapter(reg, mirror, refs, app, base)

    missing = {f["digest"] for f in findings if f["kind"] == "manifest-missing"}
    children = {c.digest for c in (*app.children, *app.attestations, *base.children)}
    caught = children <= missing
    step("Summary")
    named = {"team/app:latest", "team/base:3"} <= doomed
    print(
        f"gc-check exited 1 and named both tags:       "
        f"{'yes' if predicted.returncode == 1 and named else 'NO'}"
    )
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
    for label, held in restored.items():
        print(f"{label + ':':<45}{'yes' if held else 'NO'}")
    ok = (
        predicted.returncode == 1
        and named
        and heads_ok
        and clean.returncode == 0
        and broken.returncode == 1
        and caught
        and all(restored.values())
    )
    print("the demo story holds" if ok else "the demo story did NOT hold")
    return 0 if ok else 1


def restore_chapter(
    reg: SandboxRegistry,
    mirror: SandboxRegistry,
    refs: list[str],
    app: images.PushedIndex,
    base: images.PushedIndex,
) -> dict[str, bool]:
    """Restore from the mirror; then a deep verify and a real pull with the original digests."""
    with tempfile.TemporaryDirectory(prefix="shipsure-demo-") as scratch:
        return _restore_story(reg, mirror, refs, app, base, Path(scratch))


def _restore_story(
    reg: SandboxRegistry,
    mirror: SandboxRegistry,
    refs: list[str],
    app: images.PushedIndex,
    base: images.PushedIndex,
    scratch: Path,
) -> dict[str, bool]:
    state = str(scratch / "state")
    step(f"shipsure restore --from {mirror.host}: the plan (nothing is written yet)")
    plan = shell(SHIPSURE, "restore", *refs, "--from", mirror.host)

    step("shipsure restore --apply: blobs, then child manifests, then indexes; journaled")
    applied = shell(
        SHIPSURE, "restore", *refs, "--from", mirror.host, "--apply", "--state-dir", state
    )

    step("shipsure verify --deep: every byte of every tag, read and hashed")
    deep = shell(
        SHIPSURE, "verify", "--deep", *refs, show="shipsure verify --deep " + " ".join(refs)
    )

    step("A real pull of every platform: skopeo copy --all, digests preserved")
    pulled = scratch / "pulled"
    pulled.mkdir()
    app_copy = shell(
        "skopeo",
        "copy",
        "--all",
        "--preserve-digests",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{refs[0]}",
        f"oci:{pulled}/app:latest",
    )
    base_copy = shell(
        "skopeo",
        "copy",
        "--all",
        "--preserve-digests",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{refs[1]}",
        f"dir:{pulled}/base",
    )
    same = False
    if app_copy.returncode == 0 and base_copy.returncode == 0:
        index = json.loads(Path(pulled, "app", "index.json").read_text())
        pulled_app = index["manifests"][0]["digest"]
        raw = Path(pulled, "base", "manifest.json").read_bytes()
        pulled_base = "sha256:" + hashlib.sha256(raw).hexdigest()
        print(f"team/app:latest pulled as {pulled_app}  (pushed as {app.digest})")
        print(f"team/base:3     pulled as {pulled_base}  (pushed as {base.digest})")
        same = pulled_app == app.digest and pulled_base == base.digest

    step("shipsure restore again: nothing left to do")
    again = shell(SHIPSURE, "restore", *refs, "--from", mirror.host)
    return {
        "restore planned the missing content": plan.returncode == 1,
        "restore --apply pushed it": applied.returncode == 0,
        "verify --deep after restore passes": deep.returncode == 0,
        "skopeo copy --all, original digests": same,
        "second restore is a no-op": again.returncode == 0,
    }


if __name__ == "__main__":
    raise SystemExit(main())
