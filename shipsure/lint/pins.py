"""Image references in YAML files: Kubernetes, Woodpecker and GitHub Actions (compose has
its own module, `compose`, for its project semantics).

Pure: parsed documents (with line marks) in, `ImageUse`s out. Each extractor reads only the
fields its tool pulls images from, so a string that merely looks like an image (an env value,
a label) is never reported.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterator
from typing import Any

from shipsure.lint.images import ImageUse
from shipsure.lint.yaml_lines import LineDict, LineList, Mark

# Kubernetes pod specs hold images in these lists (core/v1 PodSpec).
_K8S_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# Workflow engines that run pods name their containers differently, per API group:
# Argo Workflows (`container:`/`script:` templates, `sidecars:`), Tekton (`steps:`,
# `sidecars:`, `stepTemplate:`). Only inside those groups' documents, so a field of the
# same name elsewhere is never read as an image.
_CRD_CONTAINER_LISTS = {"argoproj.io": ("sidecars",), "tekton.dev": ("steps", "sidecars")}
_CRD_CONTAINERS = {"argoproj.io": ("container", "script"), "tekton.dev": ("stepTemplate",)}
# Deep enough for CronJob -> jobTemplate -> spec -> template -> spec -> containers, and Lists.
_K8S_MAX_DEPTH = 32


class SourceLines:
    """The file's lines, to find the exact column of a value inside its line."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def locate(self, mark: Mark, text: str) -> Mark:
        """Where `text` is written at or after `mark` on its line (quotes skipped)."""
        if 1 <= mark.line <= len(self.lines):
            col = self.lines[mark.line - 1].find(text, max(mark.column - 1, 0))
            if col >= 0:
                return Mark(mark.line, col + 1)
        return mark


def _use(
    src: SourceLines, file: str, owner: LineDict, key: Any, source: str, text: str | None = None
) -> ImageUse | None:
    value = owner.get(key) if text is None else text
    if not isinstance(value, str) or not value.strip():
        return None
    where = src.locate(owner.value_mark(key), value)
    return ImageUse(file, where.line, where.column, value, source, where.line)


def _named_items(container: Any) -> Iterator[tuple[str, LineDict]]:
    """Items of a map-style (`name: {...}`) or list-style (`- name: ...`) section."""
    if isinstance(container, LineDict):
        for name, item in container.items():
            if isinstance(item, LineDict):
                yield str(name), item
    elif isinstance(container, LineList):
        for index, item in enumerate(container):
            if isinstance(item, LineDict):
                yield str(item.get("name", f"#{index + 1}")), item


def is_kubernetes(doc: Any) -> bool:
    return isinstance(doc, LineDict) and "apiVersion" in doc and "kind" in doc


def kubernetes_images(doc: Any, src: SourceLines, file: str) -> list[ImageUse]:
    if not is_kubernetes(doc):
        return []
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, LineDict) else None
    owner = f"{kind} {name}" if name else str(kind)
    out: list[ImageUse] = []
    seen: set[int] = set()
    group = str(doc.get("apiVersion")).split("/", 1)[0]
    lists = _K8S_CONTAINER_LISTS + _CRD_CONTAINER_LISTS.get(group, ())
    singles = _CRD_CONTAINERS.get(group, ())

    def walk(node: Any, depth: int) -> None:
        # Aliases make shared nodes: visit each once, and never deeper than a pod spec goes.
        if depth > _K8S_MAX_DEPTH or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, LineDict):
            for key, value in node.items():
                if key in lists and isinstance(value, LineList):
                    for container_name, container in _named_items(value):
                        use = _use(
                            src, file, container, "image", f"{owner} container {container_name}"
                        )
                        if use:
                            out.append(use)
                elif key in singles and isinstance(value, LineDict) and "image" in value:
                    label = node.get("name") if isinstance(node.get("name"), str) else key
                    use = _use(src, file, value, "image", f"{owner} {key} {label}")
                    if use:
                        out.append(use)
                    walk(value, depth + 1)
                else:
                    walk(value, depth + 1)
        elif isinstance(node, LineList):
            for item in node:
                walk(item, depth + 1)

    walk(doc, 0)
    return out


def woodpecker_images(doc: Any, src: SourceLines, file: str) -> list[ImageUse]:
    if not isinstance(doc, LineDict):
        return []
    rows = woodpecker_matrix(doc, src)
    return [expanded for use in _woodpecker_uses(doc, src, file) for expanded in rows.expand(use)]


# Woodpecker builds one workflow per matrix row; more rows than this is no real pipeline.
MAX_MATRIX_ROWS = 256
_MATRIX_VARIABLE = re.compile(r"\$\{(\w+)\}")
_PLAIN_SCALAR = re.compile(r"[^\s,\]}#]+")


@dataclasses.dataclass(frozen=True)
class MatrixRows:
    """A matrix's rows (variable -> value), and how a reference to a variable is written:
    Woodpecker substitutes `${NAME}` in the whole file before reading it, GitHub
    `${{ matrix.NAME }}` in the job."""

    rows: tuple[dict[str, str], ...] = ()
    variable: re.Pattern[str] = _MATRIX_VARIABLE
    label: str = "matrix"  # what the note calls the values

    def expand(self, use: ImageUse) -> list[ImageUse]:
        """`use` once per distinct image its matrix rows make (itself without a matrix or
        when it names no matrix variable). A row lacking a variable leaves it as written."""
        names = {_name(m) for m in self.variable.finditer(use.text)}
        matrix_names = {name for row in self.rows for name in row}
        if not names & matrix_names:
            return [use]
        if names - matrix_names or "$" in self.variable.sub("", use.text):
            return [use]  # another variable too: one PIN005 as written, not one per row
        out: dict[str, ImageUse] = {}
        for row in self.rows:

            def value(m: re.Match[str], row: dict[str, str] = row) -> str:
                return row.get(_name(m), m.group())

            text = self.variable.sub(value, use.text)
            shown = ", ".join(f"{n}={row[n]}" for n in sorted(names) if n in row)
            missing = ", ".join(n for n in sorted(names) if n not in row)
            note = f"{self.label} {shown}" if shown else ""
            note += f"{'; ' if note else ''}a {self.label} row without {missing}" if missing else ""
            note += f"; {use.note}" if use.note else ""
            out.setdefault(text, dataclasses.replace(use, text=text, note=note, fix_line=None))
        return list(out.values())


def _name(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g)


def woodpecker_matrix(doc: LineDict, src: SourceLines) -> MatrixRows:
    """The rows of a Woodpecker `matrix:` (axes multiplied out, or the `include` list).
    Values keep the text they are written with (`1.20` stays `1.20`, as Go's YAML reads
    it into a string)."""
    matrix = doc.get("matrix")
    if not isinstance(matrix, LineDict):
        return MatrixRows()
    include = matrix.get("include")
    if isinstance(include, LineList):
        rows = [
            {str(k): v for k in row if (v := _scalar_text(src, row.value_mark(k), row[k]))}
            for row in include
            if isinstance(row, LineDict)
        ]
        return MatrixRows(tuple(rows[:MAX_MATRIX_ROWS]))
    axes: list[list[tuple[str, str]]] = []
    for name, values in matrix.items():
        if isinstance(values, LineList):
            texts = [_scalar_text(src, values.item_mark(i), v) for i, v in enumerate(values)]
            axes.append([(str(name), t) for t in texts if t is not None])
    if not axes or math.prod(len(a) for a in axes) > MAX_MATRIX_ROWS:
        return MatrixRows()
    return MatrixRows(tuple(dict(combo) for combo in itertools.product(*axes)))


def _scalar_text(src: SourceLines, mark: Mark, value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if 1 <= mark.line <= len(src.lines):
        written = _PLAIN_SCALAR.match(src.lines[mark.line - 1], mark.column - 1)
        if written:
            return written.group()
    return str(value)


def _woodpecker_uses(doc: LineDict, src: SourceLines, file: str) -> list[ImageUse]:
    out: list[ImageUse] = []
    for section, label in (("steps", "step"), ("services", "service")):
        for name, step in _named_items(doc.get(section)):
            use = _use(src, file, step, "image", f"Woodpecker {label} {name}")
            if use:
                out.append(use)
    clone = doc.get("clone")
    for name, step in _named_items(clone):
        use = _use(src, file, step, "image", f"Woodpecker clone {name}")
        if use:
            out.append(use)
    return out


# Top-level keys of a .gitlab-ci.yml that are not jobs.
_GITLAB_KEYWORDS = frozenset(
    {"default", "include", "stages", "variables", "workflow", "spec"}
    | {"image", "services", "cache", "before_script", "after_script"}
)


def gitlab_images(doc: Any, src: SourceLines, file: str) -> list[ImageUse]:
    """`image` and `services` of GitLab CI: at the top level, under `default`, and in
    every job (hidden `.template` jobs too: `extends` copies them into real ones). Each is
    a name or a mapping with `name`."""
    out: list[ImageUse] = []
    if not isinstance(doc, LineDict):
        return out
    sections = [("global", doc)]
    if isinstance(doc.get("default"), LineDict):
        sections.append(("default", doc["default"]))
    for key, job in doc.items():
        if key not in _GITLAB_KEYWORDS and isinstance(job, LineDict):
            sections.append((f"job {key}", job))
    top = _gitlab_variables(doc)
    for label, section in sections:
        rows = _gitlab_rows(section, top if section is not doc else {})
        found: list[ImageUse] = []
        image = section.get("image")
        if isinstance(image, LineDict):
            use = _use(src, file, image, "name", f"GitLab {label} image")
        else:
            use = _use(src, file, section, "image", f"GitLab {label} image")
        if use:
            found.append(use)
        services = section.get("services")
        if isinstance(services, LineList):
            for index, service in enumerate(services):
                if isinstance(service, LineDict):
                    use = _use(src, file, service, "name", f"GitLab {label} service")
                elif isinstance(service, str):
                    use = _item_use(src, file, services, index, f"GitLab {label} service")
                else:
                    use = None
                if use:
                    found.append(use)
        out += [expanded for use in found for expanded in rows.expand(use)]
    return out


_GITLAB_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _gitlab_rows(section: LineDict, top: dict[str, str]) -> MatrixRows:
    """The values GitLab expands `$NAME` / `${NAME}` with in a job's image: its
    `parallel: matrix:` rows over its `variables` over the file's. These are the file's
    defaults: project and pipeline variables can override them when the job runs."""
    base = {**top, **_gitlab_variables(section)}
    rows: list[dict[str, str]] = []
    parallel = section.get("parallel")
    matrix = parallel.get("matrix") if isinstance(parallel, LineDict) else None
    if isinstance(matrix, LineList):
        for item in matrix:
            if not isinstance(item, LineDict):
                continue
            axes: list[list[tuple[str, str]]] = []
            for name, values in item.items():
                listed = values if isinstance(values, LineList) else [values]
                texts = [_yaml_text(v) for v in listed]
                axes.append([(str(name), t) for t in texts if t is not None])
            if math.prod(len(a) for a in axes) + len(rows) > MAX_MATRIX_ROWS:
                return MatrixRows((base,) if base else (), _GITLAB_VARIABLE, "variables")
            rows += [{**base, **dict(combo)} for combo in itertools.product(*axes)]
    if not rows and base:
        rows = [base]
    return MatrixRows(tuple(rows), _GITLAB_VARIABLE, "variables")


def _gitlab_variables(section: LineDict) -> dict[str, str]:
    """A `variables:` mapping's values (`NAME: value` or `NAME: {value: ...}`)."""
    variables = section.get("variables")
    out: dict[str, str] = {}
    if not isinstance(variables, LineDict):
        return out
    for name, value in variables.items():
        if isinstance(value, LineDict):
            value = value.get("value")
        text = _yaml_text(value)
        if text is not None:
            out[str(name)] = text
    return out


def _item_use(
    src: SourceLines, file: str, owner: LineList, index: int, source: str
) -> ImageUse | None:
    value = owner[index]
    if not isinstance(value, str) or not value.strip():
        return None
    where = src.locate(owner.item_mark(index), value)
    return ImageUse(file, where.line, where.column, value, source, where.line)


_DOCKER_USES = "docker://"


def github_images(doc: Any, src: SourceLines, file: str) -> list[ImageUse]:
    out: list[ImageUse] = []
    if not isinstance(doc, LineDict):
        return out
    for job_name, job in _named_items(doc.get("jobs")):
        rows = github_matrix(job)
        for use in _github_job_images(job_name, job, src, file):
            out += rows.expand(use)
    return out


_GITHUB_MATRIX_VARIABLE = re.compile(r"\$\{\{\s*matrix\.([A-Za-z_][\w-]*)\s*\}\}")


def github_matrix(job: LineDict) -> MatrixRows:
    """The rows of a job's `strategy.matrix` as GitHub builds them: the axes multiplied
    out, `exclude` combinations removed, then each `include` object added to every row
    whose axis values it matches (else a row of its own). A matrix built by an expression
    (`fromJSON(...)`) has no rows we can know."""
    strategy = job.get("strategy")
    matrix = strategy.get("matrix") if isinstance(strategy, LineDict) else None
    if not isinstance(matrix, LineDict):
        return MatrixRows(variable=_GITHUB_MATRIX_VARIABLE)
    axes: dict[str, list[str]] = {}
    for name, values in matrix.items():
        if name not in ("include", "exclude") and isinstance(values, LineList):
            axes[str(name)] = [t for v in values if (t := _yaml_text(v)) is not None]
    if math.prod(len(v) for v in axes.values()) > MAX_MATRIX_ROWS:
        return MatrixRows(variable=_GITHUB_MATRIX_VARIABLE)
    rows = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    if not axes:
        rows = []

    def objects(key: str) -> list[dict[str, str]]:
        listed = matrix.get(key)
        if not isinstance(listed, LineList):
            return []
        return [
            {str(k): t for k, v in item.items() if (t := _yaml_text(v)) is not None}
            for item in listed
            if isinstance(item, LineDict)
        ]

    for gone in objects("exclude"):
        rows = [r for r in rows if any(r.get(k) != v for k, v in gone.items())]
    originals = len(rows)
    for extra in objects("include"):
        matching = [
            r for r in rows[:originals] if all(r[k] == v for k, v in extra.items() if k in axes)
        ]
        for row in matching:
            row.update({k: v for k, v in extra.items() if k not in axes})
        if not matching:
            rows.append(dict(extra))
    return MatrixRows(tuple(rows[:MAX_MATRIX_ROWS]), _GITHUB_MATRIX_VARIABLE)


def _yaml_text(value: Any) -> str | None:
    """A value as GitHub and GitLab put it into text: by its YAML type, so an unquoted
    `3.10` is the number 3.1 there too (unlike Woodpecker, see `_scalar_text`); objects and
    lists are not images."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _github_job_images(job_name: str, job: LineDict, src: SourceLines, file: str) -> list[ImageUse]:
    out: list[ImageUse] = []
    container = job.get("container")
    if isinstance(container, str):
        use = _use(src, file, job, "container", f"GitHub job {job_name} container")
    elif isinstance(container, LineDict):
        use = _use(src, file, container, "image", f"GitHub job {job_name} container")
    else:
        use = None
    if use:
        out.append(use)
    for service_name, service in _named_items(job.get("services")):
        use = _use(src, file, service, "image", f"GitHub job {job_name} service {service_name}")
        if use:
            out.append(use)
    steps = job.get("steps")
    if isinstance(steps, LineList):
        for index, step in enumerate(steps):
            uses = step.get("uses") if isinstance(step, LineDict) else None
            if isinstance(uses, str) and uses.startswith(_DOCKER_USES):
                label = step.get("name") or f"#{index + 1}"
                image = uses[len(_DOCKER_USES) :]
                use = _use(src, file, step, "uses", f"GitHub job {job_name} step {label}", image)
                if use:
                    out.append(use)
    return out
