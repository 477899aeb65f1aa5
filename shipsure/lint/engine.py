"""Lint a set of paths: discover files, read each once, run pin and Woodpecker rules, apply
the config, and return one `Report`. The only module of `shipsure.lint` that reads files.

File problems are data: an unreadable or unparsable file is a `check-error` finding for that
file (a Woodpecker file that does not parse is WP001: Woodpecker refuses it too), and the
walk goes on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from shipsure.errors import BadInputError
from shipsure.fileio import read_regular
from shipsure.findings import Finding, Report
from shipsure.lint import compose, dockerfile, helm, pins
from shipsure.lint.config import LintConfig, load_config
from shipsure.lint.discover import FileKind, classify, walk, woodpecker_group, workflow_name
from shipsure.lint.images import ImageUse, check_image
from shipsure.lint.rules import check_error, finding, location
from shipsure.lint.woodpecker import Workflow, build_workflow, lint_workflows
from shipsure.lint.yaml_lines import error_line, error_text, load_all

# Configuration files are small; a bigger file is generated data we should not load whole.
MAX_FILE_BYTES = 5 << 20
_API_VERSION_LINE = re.compile(r"^apiVersion:", re.MULTILINE)
_KIND_LINE = re.compile(r"^kind:", re.MULTILINE)
# Named in the finding of a file that cannot be parsed, so nobody reads silence as "clean".
_NOT_RUN_PINS = "PIN001-PIN005"
_NOT_RUN_WOODPECKER = "PIN001-PIN005, WP002-WP010 (for this file and its cross-workflow checks)"


def _looks_like_kubernetes(text: str) -> bool:
    return bool(_API_VERSION_LINE.search(text) and _KIND_LINE.search(text))


@dataclass(frozen=True)
class LintOptions:
    disable: frozenset[str] = frozenset()
    config: Path | None = None  # default: <root>/.shipsure/lint.yaml when present
    secrets: Path | None = None  # default: <root>/.shipsure/secrets.yaml when present


@dataclass
class LintResult:
    report: Report
    images: list[ImageUse] = field(default_factory=list)  # every reference seen (for --fix)


@dataclass
class _Root:
    """One PATH argument: where files are, how to print them, which config applies."""

    base: Path  # directory the relative paths are taken from
    display: str  # prefix to print ("" for ".")
    files: list[PurePosixPath]
    config: LintConfig
    config_base: Path  # `disable` globs are relative to this folder
    # Report only these files (a single file named on the command line, read together with
    # the other workflows of its folder so cross-workflow rules see the whole picture).
    only: frozenset[PurePosixPath] | None = None

    def config_path(self, rel: PurePosixPath) -> str:
        try:
            return (self.base / rel).resolve().relative_to(self.config_base.resolve()).as_posix()
        except ValueError:
            return rel.as_posix()

    def shown(self, rel: PurePosixPath) -> str:
        return f"{self.display}/{rel}" if self.display else str(rel)

    def kind(self, rel: PurePosixPath) -> FileKind | None:
        return kind_of(self.base / rel)

    def woodpecker_rel(self, rel: PurePosixPath) -> PurePosixPath:
        """`rel` as seen from above a `.woodpecker` folder the linted path is inside, so
        its files are named and grouped as the workflows of one folder."""
        folder = PurePosixPath(os.path.normpath((self.base / rel).absolute())).parent
        if rel.parent.name != ".woodpecker" and folder.name == ".woodpecker":
            return PurePosixPath(".woodpecker", rel.name)
        return rel


def kind_of(path: Path) -> FileKind | None:
    """What a file is, judged by the folders it sits in, also above the linted path:
    `shipsure lint .woodpecker` (or `lint build.yaml` inside it) still reads Woodpecker
    workflows. Links are not followed: a link's own place says what it is."""
    absolute = PurePosixPath(os.path.normpath(path.absolute()))
    return classify(PurePosixPath(*absolute.parts[-_KIND_DEPTH:]))


# Enough folders for `.gitlab/ci/<folder>/x.yml`, `.github/workflows/x.yml`.
_KIND_DEPTH = 4


def _display(path: str) -> str:
    text = PurePosixPath(Path(path).as_posix()).as_posix()
    return "" if text == "." else text.removeprefix("./")


def _resolve_root(argument: str, options: LintOptions) -> _Root:
    path = Path(argument)
    try:
        path.lstat()
    except FileNotFoundError:
        pass
    except OSError as exc:
        # ENAMETOOLONG, ELOOP in a parent, EACCES: is_dir() would raise them as tracebacks.
        raise BadInputError(f"{argument}: {exc.strerror or exc}") from None
    if path.is_dir():
        config = load_config(path, options.config, options.secrets)
        return _Root(path, _display(argument), list(walk(path)), config, path)
    if path.is_file():
        # Keep the folders: `.woodpecker/x.yaml` and `.github/workflows/x.yml` say what it is.
        rel = PurePosixPath(path.as_posix())
        if classify(rel) is None:
            raise BadInputError(
                f"{argument}: not a file lint reads (Dockerfile, compose, Woodpecker, "
                "GitHub Actions, GitLab CI or Kubernetes YAML)"
            )
        config_base = _config_folder(path.parent)
        config = load_config(config_base, options.config, options.secrets)
        files = [rel]
        if kind_of(path) is FileKind.WOODPECKER and path.absolute().parent.name == ".woodpecker":
            files = sorted(
                {rel} | {rel.parent / p.name for p in path.parent.iterdir() if p.is_file()},
                key=str,
            )
            files = [f for f in files if kind_of(Path(f)) is FileKind.WOODPECKER]
        return _Root(Path("."), "", files, config, config_base, frozenset({rel}))
    if path.is_symlink() and not path.exists():
        raise BadInputError(f"{argument}: a symbolic link to nothing (or a loop of links)")
    if path.exists():
        raise BadInputError(f"{argument}: not a regular file or directory")
    raise BadInputError(f"{argument}: no such file or directory")


def _config_folder(start: Path) -> Path:
    """The nearest folder at or above `start` holding `.shipsure/` (stopping at a repository
    root), else `start`: a file linted alone still gets its repository's config."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / ".shipsure").is_dir():
            return folder
        if (folder / ".git").exists():
            break
    return start


def _read(path: Path, shown: str) -> str | Finding:
    try:
        # A FIFO named like a Dockerfile must not wait for a writer, nor a link to
        # /dev/zero be read forever: only regular files, never more than the limit.
        raw = read_regular(path, MAX_FILE_BYTES)
        if len(raw) > MAX_FILE_BYTES:
            return check_error(shown, 1, f"could not check: larger than {MAX_FILE_BYTES} bytes")
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return check_error(shown, 1, "could not check: not UTF-8 text")
    except OSError as exc:
        if exc.strerror == "not a regular file":
            return check_error(shown, 1, "could not check: not a regular file")
        return check_error(shown, 1, f"could not check: cannot read: {exc.strerror or exc}")


def _read_other(shown: str) -> str | None:
    """A file a compose project names (`extends`, `include`, `.env`), None if unreadable."""
    text = _read(Path(shown), shown)
    return text if isinstance(text, str) else None


def _parse_yaml(text: str, kind: FileKind | None) -> list[Any] | yaml.YAMLError:
    try:
        return list(
            load_all(
                text,
                sequence_merge=kind is FileKind.WOODPECKER,
                local_tags=kind is FileKind.GITLAB,
            )
        )
    except yaml.YAMLError as exc:
        return exc


class _Run:
    def __init__(self, options: LintOptions, progress: Callable[[str], None]) -> None:
        self.options = options
        self.progress = progress
        self.report = Report("lint")
        self.images: list[ImageUse] = []
        # Compose files reached through `extends`/`include` from several projects (or also
        # linted on their own) report each reference once.
        self.seen_uses: set[tuple[str, int, int, str]] = set()

    def add(self, root: _Root, rel: PurePosixPath, findings: Iterable[Finding]) -> None:
        if root.only is not None and rel not in root.only:
            return
        relpath = root.config_path(rel)
        for f in findings:
            rule = str(f.details.get("rule", f.kind))
            if not f.is_check_error and (
                rule in self.options.disable or root.config.is_disabled(rule, relpath)
            ):
                continue
            self.report.add(f)

    def pins(self, root: _Root, rel: PurePosixPath, uses: list[ImageUse]) -> None:
        if root.only is not None and rel not in root.only:
            return
        fresh = []
        for use in uses:
            where = (use.file, use.line, use.column, use.text)
            if where not in self.seen_uses:
                self.seen_uses.add(where)
                fresh.append(use)
        uses = fresh
        self.images.extend(uses)
        self.report.count("images", len(uses))
        for use in uses:
            self.add(root, rel, check_image(use))

    def lint_root(self, root: _Root) -> None:
        groups: dict[PurePosixPath, list[Workflow]] = {}
        for rel in root.files:
            kind = root.kind(rel)
            shown = root.shown(rel)
            self.progress(shown)
            text = _read(root.base / rel, shown)
            if isinstance(text, Finding):
                self.add(root, rel, [text])
                continue
            if kind is FileKind.DOCKERFILE:
                self.report.count("files")
                try:
                    found = dockerfile.image_uses(text, shown)
                except dockerfile.DockerfileSyntaxError as exc:
                    why = f"could not check: {exc}"
                    self.add(root, rel, [check_error(shown, 1, why)])
                    continue
                self.pins(root, rel, found)
                continue
            docs = _parse_yaml(text, kind)
            src = pins.SourceLines(text)
            template = None
            if kind is FileKind.YAML and isinstance(docs, yaml.YAMLError) and "{{" in text:
                # A Helm template: read the images it writes literally (see `helm`).
                template = helm.neutralize(text)
                if not isinstance(parsed := _parse_yaml(template.text, kind), yaml.YAMLError):
                    docs, src = parsed, pins.SourceLines(template.text)
            if isinstance(docs, yaml.YAMLError):
                self._yaml_error(root, rel, kind, text, docs, groups)
                continue
            if kind is FileKind.YAML:
                docs = [d for d in docs if pins.is_kubernetes(d)]
                if not docs:
                    continue  # some other YAML: not ours to judge
            self.report.count("files")
            uses: list[ImageUse] = []
            if kind is FileKind.COMPOSE:
                found, problems = compose.compose_uses(shown, _read_other)
                uses += found
                self.add(
                    root, rel, [check_error(shown, 1, f"could not check: {p}") for p in problems]
                )
            for doc in docs:
                if kind is FileKind.GITHUB:
                    uses += pins.github_images(doc, src, shown)
                elif kind is FileKind.GITLAB:
                    uses += pins.gitlab_images(doc, src, shown)
                elif kind is FileKind.YAML:
                    found = pins.kubernetes_images(doc, src, shown)
                    uses += [template.restore(u) for u in found] if template else found
            if kind is FileKind.WOODPECKER:
                doc = docs[0] if docs else None
                uses += pins.woodpecker_images(doc, src, shown)
                wp = root.woodpecker_rel(rel)
                workflow = build_workflow(workflow_name(wp), shown, doc)
                groups.setdefault(woodpecker_group(wp), []).append(workflow)
                if workflow.doc is None:
                    self.add(
                        root,
                        rel,
                        [
                            finding(
                                "WP001", shown, 1, "not a Woodpecker workflow: expected a mapping"
                            )
                        ],
                    )
            self.pins(root, rel, uses)
        for group_rel, workflows in groups.items():
            self.report.count("workflows", len(workflows))
            by_file = {w.file: w for w in workflows}
            for f in lint_workflows(workflows, root.config):
                owner = by_file.get(str(f.details.get("file")))
                rel = _rel_of(root, owner.file) if owner else group_rel
                self.add(root, rel, [f])

    def _yaml_error(
        self,
        root: _Root,
        rel: PurePosixPath,
        kind: FileKind | None,
        text: str,
        exc: yaml.YAMLError,
        groups: dict[PurePosixPath, list[Workflow]],
    ) -> None:
        shown = root.shown(rel)
        line = error_line(exc) or 1
        why = error_text(exc)
        if kind is FileKind.WOODPECKER:
            self.report.count("files")
            wp = root.woodpecker_rel(rel)
            groups.setdefault(woodpecker_group(wp), []).append(
                Workflow(workflow_name(wp), shown, None)
            )
            self.add(
                root,
                rel,
                [
                    finding(
                        "WP001",
                        shown,
                        line,
                        f"not valid YAML: {why}; rules not run on it: {_NOT_RUN_WOODPECKER}",
                    )
                ],
            )
        elif kind is FileKind.YAML and ("{{" in text or not _looks_like_kubernetes(text)):
            # A template even `helm` neutralizing could not read, or YAML that is not
            # Kubernetes.
            self.report.count("skipped-templates" if "{{" in text else "skipped")
        else:
            self.report.count("files")
            self.add(
                root,
                rel,
                [
                    check_error(
                        shown,
                        line,
                        f"could not check: not valid YAML: {why}; rules not run on it: "
                        f"{_NOT_RUN_PINS}",
                    )
                ],
            )


def _rel_of(root: _Root, shown: str) -> PurePosixPath:
    prefix = f"{root.display}/" if root.display else ""
    return PurePosixPath(shown.removeprefix(prefix))


def lint_paths(
    paths: list[str], options: LintOptions, progress: Callable[[str], None] = lambda _: None
) -> LintResult:
    """Lint every path (file or directory); raises `BadInputError` for a path that does not
    exist or a config that is malformed, before reading anything else."""
    roots = [_resolve_root(p, options) for p in paths]
    run = _Run(options, progress)
    for root in roots:
        run.lint_root(root)
    run.report.findings.sort(key=lambda f: (*location(f), f.kind))
    run.report.meta["paths"] = list(paths)
    return LintResult(run.report, run.images)
