"""A restore plan says "no source holds" only of what every source was asked for. A source
that could not be checked (unreachable, not a registry) leaves the lost objects unknown,
and the rebuild heading says so in the same words as its items, not "no source holds a
verified copy"."""

from __future__ import annotations

import json

import pytest

from shipsure.cli.main import main
from shipsure.recovery.plan import Lost, RestorePlan
from shipsure.recovery.render import render_plan
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: connection refused


def test_lost_content_is_not_called_unheld_when_a_source_could_not_be_checked(
    registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    repo_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = images.push_index(
        registry.url, repo_name, "v1", platforms=("linux/amd64", "linux/arm64")
    )
    amd64, arm64 = index.children
    faults.remove_blob_data(registry.root, amd64.layer_digests[0])
    faults.remove_manifest_data(registry.root, arm64.digest)
    ref = f"{registry.host}/{repo_name}:v1"

    assert main(["restore", ref, "--from", UNREACHABLE, "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "no source holds" not in out, out
    assert (
        "rebuild (2 objects; 2 not found in the sources checked; "
        f"registry {UNREACHABLE} could not be checked, see notes):\n"
    ) in out
    assert f"no source gave this blob: registry {UNREACHABLE} could not be checked" in out
    # A manifest the source could not be read for: not a "copy that does not verify".
    assert f"no source gave this manifest: registry {UNREACHABLE} could not be checked" in out
    assert "rejected copy" not in out

    assert main(["restore", ref, "--from", UNREACHABLE, "--timeout", "2", "--format", "json"]) == 1
    plan = json.loads(capsys.readouterr().out)
    assert {i["digest"]: i["sources_not_checked"] for i in plan["rebuild"]} == {
        amd64.layer_digests[0]: [f"registry {UNREACHABLE}"],
        arm64.digest: [f"registry {UNREACHABLE}"],
    }

    # Every source asked, none holds it: then it is said.
    assert main(["restore", ref, "--from", second_registry.host]) == 1
    out = capsys.readouterr().out
    assert "rebuild (no source holds a verified copy; 2 objects):\n" in out
    assert "could not be checked" not in out


def test_heading_counts_what_every_source_was_asked_for_apart() -> None:
    plan = RestorePlan("reg", ["registry a", "oci:/b"])
    plan.lost = [
        Lost("team/app", "sha256:" + "1" * 64, "layer", 10, "no source holds this blob"),
        Lost(
            "team/app",
            "sha256:" + "2" * 64,
            "layer",
            10,
            "no source gave this blob: registry a could not be checked (see notes)",
            sources_not_checked=["registry a"],
        ),
    ]
    heading = render_plan(plan, "verify --deep").splitlines()[1]
    assert heading == (
        "rebuild (2 objects; no source holds a verified copy of 1; 1 not found in the sources "
        "checked; registry a could not be checked, see notes):"
    )
