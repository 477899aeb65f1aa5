"""Image references in compose files, read with compose's semantics (the Compose
Specification, as `docker compose config` resolves a project):

- a service with `build:` names the image compose *builds* (its `image:` is the tag it gets):
  nothing to pin, so no finding and nothing for `--fix`;
- `extends: {file: common.yml, service: web}` (or `extends: web` in the same file) merges the
  base service under the extending one: an `image:` (or `build:`) inherited from the base
  counts, reported at the file and line where it is written; the extending service's own
  keys win;
- top-level `include:` pulls other compose files into the project: their services are read
  too, with their own project folder and `.env`;
- `profiles:` only decide when a service starts: its image is pulled then, so it is linted,
  and the profile is named in the finding;
- `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`,
  `${VAR:?err}`, `${VAR?err}` and `$$` are interpolated from the `.env` file of the project
  folder. The shell's environment is not read: lint runs in CI, not where the project is
  deployed. A reference that still needs an unset variable stays unresolved (PIN005).

Reading other files goes through the `read` callable the caller hands in (None when a file
cannot be read), so this module stays free of I/O.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from shipsure.lint.images import ImageUse
from shipsure.lint.pins import SourceLines
from shipsure.lint.yaml_lines import LineDict, LineList, load_all

Read = Callable[[str], str | None]  # POSIX path (as shown) -> text, None if unreadable

# extends chains and include trees in real projects are two or three deep.
MAX_DEPTH = 16
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_BRACED = re.compile(rf"\$\{{({_NAME})(?:(:?[-+?])(.*))?\}}\Z", re.S)


class Unresolved(ValueError):
    """A variable the project's `.env` does not set, and no default."""


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with compose's interpolation applied; also the variables used. Raises
    `Unresolved` (naming the variable) when a value cannot be known."""
    out: list[str] = []
    used: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i : end + 1], env, used))
            i = end + 1
            continue
        m = re.compile(_NAME).match(text, i + 1)
        if m is None:
            out.append("$")
            i += 1
            continue
        name = m.group()
        if name not in env:
            raise Unresolved(name)
        used.append(name)
        out.append(env[name])
        i = m.end()
    return "".join(out), used


def _closing_brace(text: str, i: int) -> int:
    depth = 1
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Unresolved(text)


def _braced(expr: str, env: Mapping[str, str], used: list[str]) -> str:
    m = _BRACED.match(expr)
    if m is None:
        raise Unresolved(expr)
    name, op, word = m.group(1), m.group(2), m.group(3) or ""
    used.append(name)
    value = env.get(name)
    if op is None:
        if value is None:
            raise Unresolved(name)
        return value
    # `:` variants treat an empty value as unset.
    unset = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        return interpolate(word, env)[0] if unset else str(value)
    if kind == "+":
        return "" if unset else interpolate(word, env)[0]
    if unset:  # `?`: compose stops with the error message
        raise Unresolved(f"{name} ({word})" if word else name)
    return str(value)


def parse_env(text: str) -> dict[str, str] | None:
    """A `.env` file's variables (python-dotenv's parser; compose's format is the same);
    None without python-dotenv (the lint extra): then nothing is interpolated, never guessed."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        return None

    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class _File:
    path: str  # as shown to users
    doc: LineDict
    src: SourceLines


@dataclass(frozen=True)
class _Found:
    """Where a service's effective `image`/`build` key is written."""

    file: _File
    owner: LineDict
    via: str  # "" or " (extends web in common.yml)"


class _Project:
    def __init__(self, read: Read) -> None:
        self.read = read
        self.files: dict[str, _File | None] = {}
        self.errors: list[str] = []
        self.uses: list[ImageUse] = []
        self.seen_projects: set[str] = set()

    def load(self, path: str) -> _File | None:
        if path not in self.files:
            text = self.read(path)
            parsed: _File | None = None
            if text is None:
                self.errors.append(f"{path}: cannot be read")
            else:
                try:
                    docs = list(load_all(text))
                except yaml.YAMLError as exc:
                    self.errors.append(f"{path}: not valid YAML ({' '.join(str(exc).split())})")
                    docs = []
                if docs and isinstance(docs[0], LineDict):
                    parsed = _File(path, docs[0], SourceLines(text))
            self.files[path] = parsed
        return self.files[path]

    def project(self, file: _File, env: Mapping[str, str] | None, depth: int = 0) -> None:
        if depth > MAX_DEPTH or file.path in self.seen_projects:
            return
        self.seen_projects.add(file.path)
        services = file.doc.get("services")
        if isinstance(services, LineDict):
            for name, service in services.items():
                if isinstance(service, LineDict):
                    self.service(file, str(name), service, env)
        self.includes(file, depth)

    def includes(self, file: _File, depth: int) -> None:
        entries = file.doc.get("include")
        if not isinstance(entries, LineList):
            return
        base = posixpath.dirname(file.path)
        for entry in entries:
            paths: list[Any] = []
            project_dir: str | None = None
            env_files: list[Any] = []
            if isinstance(entry, str):
                paths = [entry]
            elif isinstance(entry, LineDict):
                raw = entry.get("path")
                paths = list(raw) if isinstance(raw, list) else [raw]
                if isinstance(entry.get("project_directory"), str):
                    project_dir = posixpath.normpath(
                        posixpath.join(base, entry["project_directory"])
                    )
                raw_env = entry.get("env_file")
                env_files = list(raw_env) if isinstance(raw_env, list) else [raw_env]
            for raw_path in paths:
                if not isinstance(raw_path, str):
                    continue
                path = posixpath.normpath(posixpath.join(base, raw_path))
                included = self.load(path)
                if included is None:
                    continue
                folder = project_dir or posixpath.dirname(path)
                names = [f for f in env_files if isinstance(f, str)]
                env_paths = [posixpath.normpath(posixpath.join(base, f)) for f in names] or [
                    posixpath.join(folder, ".env") if folder else ".env"
                ]
                env: dict[str, str] | None = {}
                for env_path in env_paths:
                    values = self.env_file(env_path)
                    env = None if env is None or values is None else {**env, **values}
                self.project(included, env, depth + 1)

    def env_file(self, path: str) -> dict[str, str] | None:
        text = self.read(path)
        return parse_env(text) if text is not None else {}

    def resolve(self, file: _File, service: LineDict, key: str, depth: int = 0) -> _Found | None:
        """Where `key` of a service is written, following `extends` (own keys win)."""
        if key in service:
            return _Found(file, service, "")
        if depth > MAX_DEPTH:
            return None
        extends = service.get("extends")
        base_file, base_name = file, None
        if isinstance(extends, str):
            base_name = extends
        elif isinstance(extends, LineDict) and isinstance(extends.get("service"), str):
            base_name = extends["service"]
            if isinstance(extends.get("file"), str):
                path = posixpath.normpath(
                    posixpath.join(posixpath.dirname(file.path), extends["file"])
                )
                loaded = self.load(path)
                if loaded is None:
                    return None
                base_file = loaded
        if base_name is None:
            return None
        services = base_file.doc.get("services")
        base = services.get(base_name) if isinstance(services, LineDict) else None
        if not isinstance(base, LineDict):
            self.errors.append(f"{file.path}: extends service {base_name!r} not found")
            return None
        found = self.resolve(base_file, base, key, depth + 1)
        if found is None:
            return None
        where = "" if base_file is file else f" in {base_file.path}"
        via = found.via or f" (extends {base_name}{where})"
        return _Found(found.file, found.owner, via)

    def service(
        self, file: _File, name: str, service: LineDict, env: Mapping[str, str] | None
    ) -> None:
        if self.resolve(file, service, "build") is not None:
            return  # compose builds this image: its `image:` is the tag it is given
        found = self.resolve(file, service, "image")
        if found is None:
            return
        raw = found.owner.get("image")
        if not isinstance(raw, str) or not raw.strip():
            return
        profiles = service.get("profiles")
        label = f"compose service {name}{found.via}"
        if isinstance(profiles, list) and profiles:
            label += f" (profiles: {', '.join(str(p) for p in profiles)})"
        where = found.file.src.locate(found.owner.value_mark("image"), raw)
        text, note = raw, ""
        fix_line: int | None = where.line
        if "$" in raw and env is None:
            note, fix_line = "python-dotenv is not installed to read .env", None
        elif "$" in raw and env is not None:
            try:
                text, used = interpolate(raw, env)
                names = ", ".join(dict.fromkeys(used))
                note = f"interpolated {names} from .env or defaults" if used else ""
                fix_line = None if used else where.line  # a literal `$$` is still literal
            except Unresolved as exc:
                text, note, fix_line = raw, f"{exc} is not set in .env", None
        self.uses.append(
            ImageUse(found.file.path, where.line, where.column, text, label, fix_line, note)
        )


def compose_uses(path: str, read: Read) -> tuple[list[ImageUse], list[str]]:
    """The images a compose project starting at `path` pulls, and the problems met (a
    missing `extends` file, an unreadable include), one line each."""
    project = _Project(read)
    file = project.load(path)
    if file is None:
        return [], project.errors
    folder = posixpath.dirname(path)
    project.project(file, project.env_file(posixpath.join(folder, ".env") if folder else ".env"))
    return project.uses, project.errors
