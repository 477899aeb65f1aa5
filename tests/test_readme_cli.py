"""What a new user has is the README, the runbooks and `--help`: every command they show
parses, every option they name exists on its command, every kind, metric, setting and part
of the tree they list is there, and each `--help` shows examples and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from shipsure.cli.main import COMMANDS, build_parser, main
from shipsure.findings import GC_CHECK, SCAN, kinds_of
from shipsure.report.probe_metrics import METRIC_NAMES
from shipsure.stacks import config as stacks_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _all_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    found = {path: parser}
    for name, child in _subparsers(parser).items():
        found.update(_all_parsers(child, (*path, name)))
    return found


PARSERS = _all_parsers(build_parser())


def _options(command: tuple[str, ...]) -> set[str]:
    """Every option of a command and of the subcommands under it."""
    return {
        option
        for path, parser in PARSERS.items()
        if path[: len(command)] == command
        for action in parser._actions
        for option in action.option_strings
    }


def _shipsure_lines(text: str) -> list[str]:
    """`shipsure ...` command lines in text, continuations joined, comments, pipes,
    redirections and `&& ...` cut off; `[--apply]` (an optional flag) taken as given."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line.startswith("shipsure "):
            continue
        line = re.split(r"\s(?:#|\|\||\||&&|>)\s?", line)[0]
        # Help epilogs put a comment after two spaces without `#`.
        line = re.split(r"\s{2,}", line)[0]
        lines.append(line.replace("[--apply]", "--apply").strip())
    return lines


def _readme_examples() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [line for block in blocks for line in _shipsure_lines(block)]


def _runbook_examples() -> list[tuple[str, str]]:
    examples = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        for block in re.findall(r"```\w*\n(.*?)```", path.read_text(), flags=re.S):
            examples += [(path.name, line) for line in _shipsure_lines(block)]
    return examples


def _help_examples() -> list[tuple[str, str]]:
    examples = []
    for path, parser in PARSERS.items():
        for line in _shipsure_lines(parser.format_help()):
            examples.append((" ".join(path) or "shipsure", line))
    return examples


def _parses(line: str) -> None:
    # Shell variables as a CI job sets them (`--shard "$JOB_COMPLETION_INDEX/4"`).
    argv = shlex.split(re.sub(r"\$\{?\w+\}?", "0", line))[1:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"`{line}` does not parse (exit {exc.code}): {err.getvalue().strip()}")


def test_readme_has_examples() -> None:
    assert len(_readme_examples()) > 30


@pytest.mark.parametrize("line", _readme_examples())
def test_readme_example_parses(line: str) -> None:
    _parses(line)


@pytest.mark.parametrize(("doc", "line"), _runbook_examples())
def test_runbook_example_parses(doc: str, line: str) -> None:
    _parses(line)


@pytest.mark.parametrize(("command", "line"), _help_examples())
def test_help_example_parses(command: str, line: str) -> None:
    _parses(line)


# The README's sections, by the command (or commands) each documents.
SECTIONS: dict[str, list[tuple[str, ...]]] = {
    "`shipsure verify`": [("verify",)],
    "`shipsure probe`": [("probe",), ("report", "merge")],
    "`shipsure serve`": [("serve",)],
    "`shipsure scan`": [("scan",), ("report", "merge")],
    "`shipsure restore`": [("restore",)],
    "`shipsure lint`": [("lint",)],
    "`shipsure stacks`": [("stacks",)],
    "Writes: plan, journal, apply": [("scan",), ("lint",), ("restore",), ("stacks",)],
    "`shipsure gc-check`, `gc`, `retain`": [("gc-check",), ("gc",), ("retain",)],
    "Benchmarks": [("verify",)],  # `--deep` in bench/verify.py's line
}
# Options named beside a command that are not its own, and why.
OTHERS = {
    "--delete-untagged": "registry garbage-collect's (gc-check's -m)",
    "--dry-run": "registry garbage-collect --dry-run",
    "--version": "the registry binary's, which gc-check asks",
    "--all": "skopeo copy --all",
    "--reading": "terragrunt find --reading",
    "--remote": "crane validate --remote",
    "--repos": "bench/restore.py's",
    "--tags": "bench/probe.py's and bench/restore.py's",
}
ELSEWHERE: dict[str, dict[str, str]] = {
    "`shipsure verify`": {"--verify-content": "scan's, in the kinds table both share"},
    "`shipsure probe`": {"--platform": "what probe does not take"},
    "`shipsure scan`": {"--deep": "verify's, in the kinds table both share"},
    "`shipsure restore`": {"--deep": "the verify walk restore runs"},
    "restore": {"--deep": "the verify walk restore runs"},
    "`shipsure lint`": {
        "--platform": "Dockerfile FROM --platform",
        "--from": "COPY --from",
        "--mount": "RUN --mount=...,from=",
    },
    "lint": {
        "--platform": "Dockerfile FROM --platform",
        "--from": "COPY --from",
        "--mount": "RUN --mount=...,from=",
    },
    "report merge": {"--shard": "scan's and probe's, whose reports it joins"},
    "report": {"--shard": "scan's and probe's, whose reports it joins"},
    "stacks locks list": {"--apply": "locks break's, in the examples both share"},
}


def _sections() -> dict[str, str]:
    parts = re.split(r"^## (.*)$", README, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _named(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


def test_every_section_is_mapped() -> None:
    titles = [t for t in _sections() if t.startswith("`shipsure") or t in SECTIONS]
    assert sorted(titles) == sorted(
        next(t for t in _sections() if t.startswith(key)) for key in SECTIONS
    )
    assert {c[0] for section in SECTIONS.values() for c in section} == set(COMMANDS)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_readme_options_exist(section: str) -> None:
    text = next(body for title, body in _sections().items() if title.startswith(section))
    known: set[str] = set().union(*(_options(command) for command in SECTIONS[section]))
    missing = sorted(_named(text) - known - set(OTHERS) - set(ELSEWHERE.get(section, {})))
    assert not missing, f"README section {section} names options its commands lack: {missing}"


@pytest.mark.parametrize("command", [" ".join(path) for path in PARSERS if path])
def test_help_options_exist(command: str) -> None:
    path = tuple(command.split())
    named = _named(PARSERS[path].format_help())
    missing = sorted(named - _options(path) - set(OTHERS) - set(ELSEWHERE.get(command, {})))
    assert not missing, f"`shipsure {command} --help` names options it lacks: {missing}"


def _manifest_args() -> list[tuple[str, list[str]]]:
    """The `args` of every container in deploy/kubernetes (the image's entrypoint is
    `shipsure`), with `$(VAR)` as Kubernetes expands it from an Indexed Job's index."""
    found = []
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for container in _containers(document):
                given = container.get("args", [])
                assert isinstance(given, list), path
                args = [re.sub(r"\$\(\w+\)", "0", str(a)) for a in given]
                found.append((path.name, args))
    return found


def _containers(node: object) -> list[dict[str, object]]:
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            return list(node["containers"])
        return [c for value in node.values() for c in _containers(value)]
    return []


def test_manifests_have_shipsure_containers() -> None:
    assert len(_manifest_args()) >= 3


@pytest.mark.parametrize(("manifest", "args"), _manifest_args())
def test_manifest_args_parse(manifest: str, args: list[str]) -> None:
    _parses(shlex.join(["shipsure", *args]))


def test_readme_names_every_probe_metric() -> None:
    """The probe section lists its metrics as `shipsure_probe_findings{...}`, then the
    others by their suffix (`_coverage_ratio`)."""
    text = next(body for title, body in _sections().items() if title.startswith("`shipsure probe`"))
    listed = set(re.findall(r"`(?:shipsure_probe)?(_[a-z_]+)[`{]", text))
    missing = [m for m in METRIC_NAMES if m.removeprefix("shipsure_probe") not in listed]
    assert not missing, f"README's probe metrics lack {missing}"


@pytest.mark.parametrize("command", [SCAN, GC_CHECK])
def test_help_names_every_kind(command: str) -> None:
    """`--help` lists what the command finds: every kind it emits is there."""
    text = PARSERS[(command,)].format_help()
    missing = [k.id for k in kinds_of(command) if not re.search(rf"\b{k.id}\b", text)]
    assert not missing, f"`shipsure {command} --help` does not name {missing}"


@pytest.mark.parametrize("command", [" ".join(p) for p, parser in PARSERS.items() if p])
def test_help_teaches(command: str) -> None:
    """Every command's `--help` shows examples and its exit codes (a group's, what its
    subcommands give)."""
    parser = PARSERS[tuple(command.split())]
    text = parser.format_help()
    assert "examples:" in text and "exit codes" in text, f"shipsure {command} --help"


def test_layout_names_every_part() -> None:
    """The Layout section names every module and package of shipsure/ and every top-level
    folder of the repository, and nothing that is not there."""
    layout = _sections()["Layout"]
    package = ROOT / "shipsure"
    parts = {
        p.name
        for p in package.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and not p.name.startswith("__"))
    }
    missing = sorted(p for p in parts if not re.search(rf"(?<![\w/.]){re.escape(p)}/?", layout))
    assert not missing, f"README's Layout does not name shipsure/{missing}"
    top = set(re.findall(r"^(\w+)/(?: |$)", layout.split("```")[1], flags=re.M))
    assert all((ROOT / name).is_dir() for name in top), top
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=False
    )
    if tracked.returncode != 0:
        return  # not a git checkout: what is tracked (and not built or cached) is unknown
    folders = {f.split("/")[0] for f in tracked.stdout.splitlines() if "/" in f}
    folders = {f for f in folders if not f.startswith(".")}
    assert top == folders, f"Layout's top-level folders {sorted(top)} != {sorted(folders)}"
    named = set(re.findall(r"^  (\w+)/ ", layout, flags=re.M))
    assert named <= {p.name for p in package.iterdir() if p.is_dir()}, named


def test_readme_ci_snippets_pass_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The Woodpecker and GitHub Actions snippets a reader copies pass `shipsure lint`."""
    woodpecker, github = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)[:2]
    (tmp_path / ".woodpecker.yml").write_text(woodpecker)
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    job = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
    (workflows / "ci.yml").write_text(job + github)
    code = main(["lint", "--fail-on", "info", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "checked 2 files, 3 images, 1 workflows" in out


def test_stacks_help_shows_every_setting() -> None:
    """README: "Settings live in `.shipsure/stacks.yaml`; `shipsure stacks --help` lists
    them" — with their defaults, since `--help` is all a user has."""
    text = PARSERS[("stacks",)].format_help()
    missing = [key for key in sorted(stacks_config._KNOWN) if f"\n    {key}:" not in text]
    assert not missing, f"`shipsure stacks --help` does not show {missing}"
    assert "parallel: 4" in text and 'lock_prefix: ""' in text
