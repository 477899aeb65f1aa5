"""The files a Terragrunt unit reads, found by evaluating its path expressions statically.

A unit (a folder with `terragrunt.hcl`) reads more than its own folder:

* `include` blocks: `path = find_in_parent_folders("root.hcl")`, a literal path, or
  `"${dirname(find_in_parent_folders("root.hcl"))}/_envcommon/app.hcl"`;
* `read_terragrunt_config(...)` anywhere (usually in `locals`), also inside included and read
  files, which may read further files;
* `dependency "x" { config_path = ... }` and `dependencies { paths = [...] }`: the outputs of
  another unit feed this one;
* `terraform { source = "${get_repo_root()}/modules/app" }`, with `//` subdirectories.

Terragrunt evaluates an included file in the context of the unit that includes it
(`get_terragrunt_dir()` and `find_in_parent_folders` start from the unit), while a file
loaded by `read_terragrunt_config` is evaluated as a configuration of its own folder;
`get_parent_terragrunt_dir()` is the included file's folder. Relative paths are taken from
the unit's folder, Terragrunt's working directory. These rules were checked against
Terragrunt v1.0.0's `find --reading`.

Evaluated statically: string literals and templates, `local.NAME` (static locals of the same
file), `find_in_parent_folders(name, fallback)`, `get_repo_root()`, `get_terragrunt_dir()`,
`get_parent_terragrunt_dir()`, `get_path_to_repo_root()`, `get_path_from_repo_root()`,
`dirname()`, `basename()`, `abspath()`. Anything else (`get_env`, `run_cmd`, values read out
of other configurations) cannot be known without running Terragrunt: such a path is
reported as unresolved, and the caller treats the unit as changed rather than guess.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ReadText = Callable[[str], str | None]

UNIT_FILE = "terragrunt.hcl"
# Words that make a unit worth parsing: without any of them it reads nothing outside itself.
_TRIGGERS = re.compile(
    r"\b(?:include|read_terragrunt_config|dependency|dependencies|get_repo_root|"
    r"get_terragrunt_dir|get_parent_terragrunt_dir|find_in_parent_folders)\b"
)
_CALL = re.compile(r"\b(read_terragrunt_config)\s*\(")
_IDENT_CALL = re.compile(r"([A-Za-z_][\w]*)\s*\(")
_LOCAL = re.compile(r"local\.([A-Za-z_][\w-]*)")
# A terraform source naming a remote location (go-getter forms): ignored, as modules are.
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*::|[a-z0-9+.-]+://|git@|github\.com/|tfr:)", re.I)
_MAX_DEPTH = 16
_ROOT = "/"  # repository paths are evaluated as absolute paths below this root


@dataclass(frozen=True)
class Read:
    """Something a unit reads: a repository file, or a folder (any file below it)."""

    path: str  # repository-relative POSIX path
    folder: bool
    why: str  # e.g. "includes root.hcl", "depends on live/prod/db"


@dataclass
class UnitReads:
    reads: list[Read] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # one line each, for warnings
    outside: list[str] = field(default_factory=list)  # paths outside the repository


class _Unresolved(Exception):
    pass


def _scan_string(s: str, i: int) -> int:
    """Index of the quote closing the string whose opening quote is at `i - 1`."""
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        if s.startswith("${", i) or s.startswith("%{", i):
            i = _scan_code(s, i + 2, "}") + 1
            continue
        i += 1
    raise _Unresolved("unterminated string")


def _scan_code(s: str, i: int, closer: str, *, to_end: bool = False) -> int:
    """Index of `closer` at bracket depth 0 from `i` (strings and nested brackets skipped);
    with `to_end`, len(s) when there is none instead of _Unresolved."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    while i < len(s):
        c = s[i]
        if c == '"':
            i = _scan_string(s, i + 1) + 1
            continue
        if not stack and c == closer:
            return i
        if c in pairs:
            stack.append(pairs[c])
        elif stack and c == stack[-1]:
            stack.pop()
        i += 1
    if to_end:
        return len(s)
    raise _Unresolved(f"no closing {closer!r}")


def _split_args(s: str) -> list[str]:
    """Top-level comma-separated arguments of a call's argument text."""
    args: list[str] = []
    start = 0
    while (comma := _scan_code(s, start, ",", to_end=True)) < len(s):
        args.append(s[start:comma])
        start = comma + 1
    tail = s[start:].strip()
    if tail:
        args.append(tail)
    return [a.strip() for a in args]


@dataclass
class _Context:
    """Where an expression is evaluated: the unit (or read configuration) it belongs to."""

    config_dir: str  # absolute: get_terragrunt_dir()
    file: str  # absolute path of the file the expression is written in
    parent_dir: str | None  # get_parent_terragrunt_dir(), None where Terragrunt has none
    locals: dict[str, Any]


class _Evaluator:
    def __init__(self, files: frozenset[str], folders: frozenset[str]) -> None:
        self.files = files
        self.folders = folders

    def exists(self, absolute: str) -> bool:
        return _relative(absolute) in self.files

    def value(self, expr: Any, ctx: _Context, depth: int = 0) -> str:
        if depth > _MAX_DEPTH:
            raise _Unresolved("expression nested too deeply")
        if not isinstance(expr, str):
            raise _Unresolved(f"not a string: {expr!r}")
        s = expr.strip()
        if s.startswith('"') and _scan_string(s, 1) == len(s) - 1:
            return self.template(s[1:-1], ctx, depth)
        if s.startswith("${") and _scan_code(s, 2, "}") == len(s) - 1:
            return self.value(s[2:-1], ctx, depth + 1)
        if s.startswith("(") and _scan_code(s, 1, ")") == len(s) - 1:
            return self.value(s[1:-1], ctx, depth + 1)
        local = _LOCAL.fullmatch(s)
        if local:
            name = local.group(1)
            if name not in ctx.locals:
                raise _Unresolved(f"local.{name} is not a static local of this file")
            return self.value(ctx.locals[name], ctx, depth + 1)
        call = _IDENT_CALL.match(s)
        if call and _scan_code(s, call.end(), ")") == len(s) - 1:
            args = _split_args(s[call.end() : -1])
            return self.call(call.group(1), args, ctx, depth)
        raise _Unresolved(f"`{s}` is not static")

    def template(self, body: str, ctx: _Context, depth: int) -> str:
        out: list[str] = []
        i = 0
        while i < len(body):
            if body.startswith("$${", i) or body.startswith("%%{", i):
                out.append(body[i + 1 : i + 3])
                i += 3
            elif body.startswith("${", i):
                end = _scan_code(body, i + 2, "}")
                out.append(self.value(body[i + 2 : end], ctx, depth + 1))
                i = end + 1
            elif body.startswith("%{", i):
                raise _Unresolved("template directive")
            elif body[i] == "\\" and i + 1 < len(body):
                out.append(body[i + 1] if body[i + 1] in '"\\' else body[i : i + 2])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)

    def call(self, name: str, args: list[str], ctx: _Context, depth: int) -> str:
        def values() -> list[str]:
            return [self.value(a, ctx, depth + 1) for a in args]

        if name == "get_repo_root" and not args:
            return _ROOT
        if name == "get_terragrunt_dir" and not args:
            return ctx.config_dir
        if name == "get_parent_terragrunt_dir" and not args:
            if ctx.parent_dir is None:
                raise _Unresolved("get_parent_terragrunt_dir() outside an included file")
            return ctx.parent_dir
        if name == "get_path_to_repo_root" and not args:
            return posixpath.relpath(_ROOT, ctx.config_dir)
        if name == "get_path_from_repo_root" and not args:
            return posixpath.relpath(ctx.config_dir, _ROOT)
        if name in ("dirname", "basename", "abspath") and len(args) == 1:
            [path] = values()
            if name == "dirname":
                return posixpath.dirname(path)
            if name == "basename":
                return posixpath.basename(path)
            return posixpath.normpath(posixpath.join(ctx.config_dir, path))
        if name == "find_in_parent_folders" and len(args) <= 2:
            given = values()
            wanted = given[0] if given else UNIT_FILE
            folder = posixpath.dirname(ctx.config_dir)
            while True:
                candidate = posixpath.join(folder, wanted)
                if self.exists(candidate):
                    return candidate
                if folder == _ROOT:
                    break
                folder = posixpath.dirname(folder)
            if len(given) == 2:
                return given[1]
            raise _Unresolved(
                f"find_in_parent_folders({wanted!r}) finds nothing inside the repository"
            )
        raise _Unresolved(f"{name}() cannot be evaluated statically")


def _blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(label, body)` of each block of a kind in python-hcl2's output (labels unquoted)."""
    for entry in doc.get(kind) or []:
        if not isinstance(entry, dict):
            continue
        if "__is_block__" in entry:
            yield "", entry
            continue
        for label, body in entry.items():
            if isinstance(body, dict):
                yield str(label).strip('"'), body


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _norm(path: str) -> str:
    # `"${dirname(...)}/x"` with dirname "/" gives "//x", which normpath keeps as is.
    return posixpath.normpath(re.sub(r"/+", "/", path))


def _relative(absolute: str) -> str:
    rel = _norm(absolute).removeprefix(_ROOT)
    return "" if rel in (".", "") else rel


class _UnitWalker:
    def __init__(
        self,
        unit: str,
        read_text: ReadText,
        evaluator: _Evaluator,
        parse: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.unit = unit
        self.read_text = read_text
        self.evaluator = evaluator
        self.parse = parse
        self.result = UnitReads()
        self.seen: set[tuple[str, str]] = set()

    def resolve(self, expr: Any, ctx: _Context, what: str) -> str | None:
        """The absolute path an expression names, or None (recorded as unresolved)."""
        try:
            path = self.evaluator.value(expr, ctx)
        except _Unresolved as exc:
            shown = expr if isinstance(expr, str) else repr(expr)
            where = _relative(ctx.file)
            self.result.unresolved.append(f"{where}: {what} {shown} cannot be resolved ({exc})")
            return None
        if not path.startswith(_ROOT):
            path = posixpath.join(self.unit_abs, path)
        return _norm(path)

    @property
    def unit_abs(self) -> str:
        return posixpath.join(_ROOT, self.unit)

    def add(self, absolute: str, folder: bool, why: str, ctx: _Context) -> bool:
        rel = _relative(absolute)
        if absolute == "/.." or absolute.startswith("/../") or rel.startswith("../"):
            self.result.outside.append(f"{_relative(ctx.file)}: {why} is outside the repository")
            return False
        self.result.reads.append(Read(rel, folder, why))
        return True

    def walk_file(self, absolute: str, ctx: _Context, depth: int, own: bool) -> None:
        """Follow what the configuration file at `absolute` reads, in context `ctx`."""
        if depth > _MAX_DEPTH or (absolute, ctx.config_dir) in self.seen:
            return
        self.seen.add((absolute, ctx.config_dir))
        rel = _relative(absolute)
        text = self.read_text(rel)
        if text is None:
            self.result.unresolved.append(f"{rel}: cannot be read")
            return
        if not _TRIGGERS.search(text) and "source" not in text:
            return
        doc = self.parse(text)
        if doc is None:
            self.result.unresolved.append(f"{rel}: not valid HCL; what it reads is unknown")
            return
        locals_: dict[str, Any] = {}
        for _, body in _blocks(doc, "locals"):
            locals_.update({k: v for k, v in body.items() if k != "__is_block__"})
        ctx = _Context(ctx.config_dir, absolute, ctx.parent_dir, locals_)
        for label, body in _blocks(doc, "include"):
            target = self.resolve(body.get("path"), ctx, "include path")
            name = f"include {label!r}" if label else "include"
            if target and self.add(target, False, f"{name} reads {_relative(target)}", ctx):
                parent = _Context(ctx.config_dir, target, posixpath.dirname(target), {})
                self.walk_file(target, parent, depth + 1, own=False)
        for value in _strings(doc):
            for call in _CALL.finditer(value):
                try:
                    end = _scan_code(value, call.end(), ")")
                    args = _split_args(value[call.end() : end])
                except _Unresolved:
                    args = []
                if not args:
                    self.result.unresolved.append(f"{rel}: read_terragrunt_config without a path")
                    continue
                target = self.resolve(args[0], ctx, "read_terragrunt_config path")
                if target is None:
                    continue
                if not self.evaluator.exists(target) and len(args) > 1:
                    continue  # the default argument is used instead: no file is read
                why = f"reads {_relative(target)} (read_terragrunt_config in {rel})"
                if self.add(target, False, why, ctx):
                    own_ctx = _Context(posixpath.dirname(target), target, None, {})
                    self.walk_file(target, own_ctx, depth + 1, own=False)
        for label, body in _blocks(doc, "dependency"):
            target = self.resolve(body.get("config_path"), ctx, "dependency config_path")
            if target:
                self.add(target, True, f"dependency {label!r} on {_relative(target)}", ctx)
        for _, body in _blocks(doc, "dependencies"):
            paths = body.get("paths")
            for expr in paths if isinstance(paths, list) else [paths]:
                target = self.resolve(expr, ctx, "dependencies path")
                if target:
                    self.add(target, True, f"depends on {_relative(target)}", ctx)
        for _, body in _blocks(doc, "terraform"):
            source = body.get("source")
            if source is None:
                continue
            # A literal local source in the unit's own file is a module source: the module
            # walk reports it already.
            if own and isinstance(source, str) and "${" not in source:
                continue
            self.source(source, ctx)

    def source(self, expr: Any, ctx: _Context) -> None:
        try:
            text = self.evaluator.value(expr, ctx)
        except _Unresolved as exc:
            prefix = expr.strip('"') if isinstance(expr, str) else ""
            if _REMOTE.match(prefix):
                return  # a remote source, whatever its variables say
            where = _relative(ctx.file)
            self.result.unresolved.append(f"{where}: terraform source {expr} ({exc})")
            return
        if _REMOTE.match(text):
            return
        if not text.startswith((_ROOT, "./", "../")):
            return  # neither absolute nor Terraform-local: a registry or bare name
        path = text.split("?", 1)[0]
        if path.startswith(_ROOT):
            path = _ROOT + path.lstrip("/")
        # `dir//sub`: Terragrunt copies all of `dir` and runs in `sub`, which may use its
        # siblings: the whole of `dir` is read.
        path = path.split("//", 1)[0]
        if not path.startswith(_ROOT):
            path = posixpath.join(self.unit_abs, path)
        path = _norm(path)
        self.add(path, True, f"terraform source {_relative(path) or '.'}", ctx)


def unit_reads(
    unit: str,
    files: frozenset[str],
    read_text: ReadText,
    parse: Callable[[str], dict[str, Any] | None],
) -> UnitReads:
    """What the unit in folder `unit` (repository-relative) reads besides its own folder.

    `files` are the repository's tracked files; `parse` turns HCL text into python-hcl2's
    dictionary, or None when it is not valid HCL.
    """
    folders = frozenset(posixpath.dirname(f) for f in files)
    walker = _UnitWalker(unit, read_text, _Evaluator(files, folders), parse)
    unit_abs = posixpath.join(_ROOT, unit)
    config = posixpath.join(unit_abs, UNIT_FILE)
    walker.walk_file(config, _Context(unit_abs, config, None, {}), 0, own=True)
    return walker.result


def parse_hcl(text: str) -> dict[str, Any] | None:
    """python-hcl2's dictionary of an HCL text, None when it does not parse."""
    try:
        import hcl2
    except ImportError:
        return None
    try:
        doc = hcl2.loads(text)
    except Exception:  # python-hcl2 raises lark's many error types
        return None
    return doc if isinstance(doc, dict) else None
