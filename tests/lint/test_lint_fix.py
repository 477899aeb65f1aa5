"""`lint --fix`: pins resolved from a real registry; plan first, files only with --apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.lint.fix import FileEdit, FixPlan, FixStep, apply_plan, rewrite
from shipsure.sandbox.images import push_image
from shipsure.sandbox.registry import SandboxRegistry


def test_rewrite_keeps_every_other_byte() -> None:
    data = (
        b"services:\r\n  a:\r\n    image: 'reg/app:1'  # keep me\r\n"
        b"  b:\r\n    image: reg/app:1.0.0\r\n"
    )
    new, missed = rewrite(data, [FixStep("f", 3, "reg/app:1", "reg/app:1@sha256:" + "0" * 64)])
    assert missed == []
    assert new == data.replace(b"'reg/app:1'", b"'reg/app:1@sha256:" + b"0" * 64 + b"'")


def test_rewrite_does_not_touch_a_longer_reference() -> None:
    data = b"FROM reg/app:1.2 AS reg/app:1\n"
    new, _ = rewrite(data, [FixStep("f", 1, "reg/app:1", "X")])
    assert new == b"FROM reg/app:1.2 AS X\n"
    _, missed = rewrite(b"FROM reg/app:1.2\n", [FixStep("f", 1, "reg/app:1", "X")])
    assert len(missed) == 1


@pytest.fixture
def repo(tmp_path: Path, registry: SandboxRegistry, repo_name: str) -> tuple[Path, dict[str, str]]:
    """A repository whose files use floating tags of images pushed to the real registry."""
    app = push_image(registry.url, repo_name, "1", seed="app-1")
    latest = push_image(registry.url, repo_name, "latest", seed="app-latest")
    host = registry.host
    root = tmp_path / "repo"
    root.mkdir()
    (root / "docker-compose.yml").write_bytes(
        f'# deploy\r\nservices:\r\n  app:\r\n    image: "{host}/{repo_name}:1"  # pinned by CI\r\n'
        f"  gone:\r\n    image: {host}/{repo_name}:9\r\n".encode()
    )
    (root / "Dockerfile").write_text(
        f"ARG BASE={host}/{repo_name}:1\n"
        f"ARG V=1\n"
        f"FROM ${{BASE}} AS base\n"
        f"FROM {host}/{repo_name}\n"
        f"FROM {host}/{repo_name}:${{V}}\n"
        f"COPY --from=base /x /x\n"
    )
    return root, {"1": app.digest, "latest": latest.digest, "host": host, "repo": repo_name}


def test_fix_plans_then_applies(
    repo: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, facts = repo
    host, name, d1, dl = facts["host"], facts["repo"], facts["1"], facts["latest"]
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    journal = tmp_path / "journal.jsonl"

    # The plan: printed, nothing written.
    assert main(["lint", "--fix", "--format", "json", str(root)]) == 1
    plan = json.loads(capsys.readouterr().out)
    changes = {(Path(c["file"]).name, c["line"], c["new"]) for c in plan["changes"]}
    assert changes == {
        ("docker-compose.yml", 4, f"{host}/{name}:1@{d1}"),
        ("Dockerfile", 1, f"{host}/{name}:1@{d1}"),  # the ARG default, not the FROM
        ("Dockerfile", 4, f"{host}/{name}:latest@{dl}"),
    }
    unresolved = {(Path(c["file"]).name, c["line"]): c["reason"] for c in plan["unresolved"]}
    assert set(unresolved) == {("docker-compose.yml", 6), ("Dockerfile", 5)}
    assert "no tag '9'" in unresolved[("docker-compose.yml", 6)]
    assert "assembled from variables" in unresolved[("Dockerfile", 5)]
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before

    # Apply: only the planned lines change; the unresolved ones make the exit 3.
    code = main(["lint", "--fix", "--apply", "--journal", str(journal), str(root)])
    capsys.readouterr()
    assert code == 3
    compose = (root / "docker-compose.yml").read_bytes()
    assert compose == before["docker-compose.yml"].replace(
        f'"{host}/{name}:1"'.encode(), f'"{host}/{name}:1@{d1}"'.encode()
    )
    dockerfile = (root / "Dockerfile").read_text().splitlines()
    assert dockerfile[0] == f"ARG BASE={host}/{name}:1@{d1}"
    assert dockerfile[3] == f"FROM {host}/{name}:latest@{dl}"
    assert dockerfile[4] == f"FROM {host}/{name}:${{V}}"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["state"] for r in records] == ["intent", "done", "intent", "done"]
    assert {r["writer"] for r in records} == {"lint-fix"}

    # Linting again: the pinned references are clean; only the unfixable two remain.
    assert main(["lint", "--format", "json", str(root)]) == 1
    left = json.loads(capsys.readouterr().out)["findings"]
    assert {(Path(f["path"]).name, f["line"], f["rule"]) for f in left} == {
        ("Dockerfile", 5, "PIN003"),
        ("docker-compose.yml", 6, "PIN003"),
    }


def test_fix_refuses_a_file_changed_after_planning(tmp_path: Path) -> None:
    target = tmp_path / "docker-compose.yml"
    target.write_text("services:\n  a:\n    image: x\n")
    step = FixStep(str(target), 3, "x", "y")
    plan = FixPlan([step], [FileEdit(str(target), (str(target),), "0" * 64, "1" * 64, (step,))])
    result = apply_plan(plan, tmp_path / "j.jsonl")
    assert result.applied == [] and "changed since the plan" in result.skipped[0][1]
    states = [json.loads(line)["state"] for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert states == ["intent", "refused"]
    assert target.read_text() == "services:\n  a:\n    image: x\n"


def test_fix_with_unreachable_registry_is_could_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port nothing listens on: the plan says why, nothing is guessed.
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: 127.0.0.1:9/app:1\n")
    code = main(["lint", "--fix", "--timeout", "2", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 3
    assert "NOT FIXED: could not ask 127.0.0.1:9" in out
