"""retain --apply then gc --apply against a real registry (2.8 and v3): every kept tag still passes
`shipsure verify --deep` and a real `skopeo copy --all`, and what was dropped is gone."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.gc.safe import plan_gc
from shipsure.sandbox import faults
from shipsure.sandbox.images import push_artifact, push_image, push_index, referrers_tag
from shipsure.sandbox.registry import Flavour, SandboxRegistry, registry_available
from shipsure.storage.filesystem import FilesystemStorage
from tests.conftest import require_registry

pytestmark = pytest.mark.skipif(
    not registry_available() or shutil.which("skopeo") is None,
    reason="needs docker-registry and skopeo (scripts/setup.sh)",
)

POLICY = """\
policies:
  - repositories: "*"
    keep:
      any:
        - semver: {per: major}
        - match: 'keep-.*'
    protect: [latest, pinned]
"""


def _quiet(argv: list[str]) -> int:
    with redirect_stdout(io.StringIO()):
        return main(argv)


def _seed(url: str) -> dict[str, object]:
    repo = "team/app"
    v1 = push_index(url, repo, "1.0.0", seed="one", attestations=True)
    v11 = push_index(url, repo, "1.1.0", seed="one-one")
    # Not nested: skopeo 1.9 cannot copy an index inside an index (the gc tests cover nesting).
    v2 = push_index(url, repo, "2.0.0", seed="two")
    push_index(url, repo, "latest", seed="two")  # same digest as 2.0.0
    push_index(url, repo, "old-alias", seed="two")  # also the same
    dev = push_image(url, repo, "dev-1", seed="dev")
    child = next(iter(v1.platform_images()))
    push_image(url, repo, None, seed="unused")  # untagged from the start
    sig2 = push_artifact(url, repo, v2)  # fallback tag sha256-<v2>: kept with its subject
    sig1 = push_artifact(url, repo, v1)  # fallback tag sha256-<v1>: dropped with it
    return {
        "repo": repo,
        "v1": v1,
        "v11": v11,
        "v2": v2,
        "dev": dev,
        "child": child,
        "sig1": sig1,
        "sig2": sig2,
    }


def _pin(root: Path, repo: str, digest: str) -> None:
    """Tag `pinned` at a child of 1.0.0 (a kept tag naming what a dropped index holds)."""
    for rel, data in (("current/link", digest), (f"index/sha256/{digest[7:]}/link", digest)):
        path = faults.tag_folder(root, repo, "pinned") / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)


@pytest.mark.both_registries
@pytest.mark.parametrize("where", ["api", "storage"])
def test_retain_then_gc_keeps_every_kept_tag_pullable(
    tmp_path: Path, where: str, registry_flavour: Flavour
) -> None:
    require_registry(registry_flavour)
    root = tmp_path / "storage"
    root.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    state = tmp_path / "state"
    with SandboxRegistry(root, flavour=registry_flavour) as registry:
        s = _seed(registry.url)
        repo = str(s["repo"])
        child = s["child"].digest  # type: ignore[attr-defined]
        _pin(root, repo, child)
        v2 = s["v2"].digest  # type: ignore[attr-defined]
        v1 = s["v1"].digest  # type: ignore[attr-defined]
        target = ["--registry", registry.host] if where == "api" else ["--on-storage", str(root)]
        argv = ["retain", "--policy", str(policy), *target, "--journal", str(state / "r.jsonl")]
        assert _quiet(argv) == 0  # the plan only
        assert _quiet([*argv, "--apply"]) == 0
        done = {
            (e["op"], e["target"])
            for e in map(json.loads, (state / "r.jsonl").read_text().splitlines())
            if e["state"] == "done"
        }
        # old-alias shares 2.0.0's manifest: only the tag goes; 1.0.0's index goes (API).
        assert ("delete-tag", f"{repo}:old-alias") in done
        if where == "api":
            assert ("delete-manifest", f"{repo}@{v1}") in done
        registry.stop()  # collect with the registry stopped, as gc requires
        assert (
            _quiet(
                ["gc", str(root), "--apply", "--min-age", "0", "--journal", str(state / "gc.jsonl")]
            )
            == 0
        )
        assert plan_gc(FilesystemStorage(root), min_age=0).plan.actions == []
        registry.start()
        kept = ["1.1.0", "2.0.0", "latest", "pinned", referrers_tag(v2)]
        for tag in kept:
            ref = f"{registry.host}/{repo}:{tag}"
            assert main(["verify", "--deep", ref]) == 0, tag
            out = tmp_path / f"copy-{tag}"
            done = subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--all",
                    "--quiet",
                    "--src-tls-verify=false",
                    f"docker://{ref}",
                    f"oci:{out}:x",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        tags = set((root / f"docker/registry/v2/repositories/{repo}/_manifests/tags").iterdir())
        assert {t.name for t in tags} == set(kept)
        # What only dropped tags held is gone from the blob store.
        dev_layers = s["dev"].layer_digests  # type: ignore[attr-defined]
        for digest in (v1, *dev_layers):
            assert not faults.blob_data_path(root, digest).exists(), digest
        assert faults.blob_data_path(root, child).exists()
