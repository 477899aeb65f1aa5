"""YAML with line numbers: a PyYAML SafeLoader that remembers where every node started.

Mappings load as `LineDict` and sequences as `LineList`: ordinary dicts and lists (so
jsonschema and plain code read them unchanged) that also know the 1-based line and column of
themselves, of each key and of each value. Linters need that to say "file:line".

With `sequence_merge=True`, sequences merge as Woodpecker reads them: its YAML library
(codeberg.org/6543/xyaml, on top of gopkg.in/yaml.v3) replaces a list item that is a single
`<<` key whose value is an alias to a sequence (`- <<: *list`), or a list of such aliases
(`- <<: [*a, *b]`), by those sequences' items; any other `<<` list item is an error there.
Plain YAML 1.1 (and compose, Kubernetes) merges mappings only, so that stays the default.

Two defences, because lint reads files from anywhere:
- an alias budget, so a "billion laughs" document cannot make a walk explode;
- timestamps stay strings, as Go's YAML (Woodpecker, Kubernetes, compose) reads them into
  string fields, so a date-looking tag or branch is not turned into a `datetime`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Real pipeline files use a handful of anchors; thousands mean a hostile document.
MAX_ALIASES = 1000


@dataclass(frozen=True)
class Mark:
    """A 1-based position in a file."""

    line: int
    column: int


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class LineDict(dict[Any, Any]):
    """A mapping that knows where it, its keys and its values start."""

    mark: Mark = Mark(0, 0)

    def __init__(self) -> None:
        super().__init__()
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}

    def key_line(self, key: Any) -> int:
        return self.key_marks.get(key, self.mark).line

    def value_mark(self, key: Any) -> Mark:
        return self.value_marks.get(key, self.mark)


class LineList(list[Any]):
    """A sequence that knows where it and each item start."""

    mark: Mark = Mark(0, 0)

    def __init__(self) -> None:
        super().__init__()
        self.item_marks: list[Mark] = []

    def item_mark(self, index: int) -> Mark:
        if 0 <= index < len(self.item_marks):
            return self.item_marks[index]
        return self.mark


class YamlLimitError(yaml.YAMLError):
    """The document uses more aliases than any real configuration would."""


class LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry their positions."""

    def __init__(self, stream: str, sequence_merge: bool = False) -> None:
        super().__init__(stream)
        self._aliases = 0
        self.sequence_merge = sequence_merge
        # Nodes written somewhere as an alias: `<<: *list` differs from `<<: [x, y]` only here.
        self.aliased: set[int] = set()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        alias = self.check_event(AliasEvent)
        if alias:
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise YamlLimitError(
                    f"more than {MAX_ALIASES} aliases at line {event.start_mark.line + 1}"
                )
        node = super().compose_node(parent, index)
        if alias and node is not None:
            self.aliased.add(id(node))
        return node

    def construct_line_mapping(self, node: MappingNode) -> Iterator[LineDict]:
        result = LineDict()
        result.mark = _mark(node)
        yield result
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                ) from None
            result[key] = self.construct_object(value_node, deep=True)
            result.key_marks[key] = _mark(key_node)
            result.value_marks[key] = _mark(value_node)

    def construct_line_sequence(self, node: SequenceNode) -> Iterator[LineList]:
        result = LineList()
        result.mark = _mark(node)
        yield result
        children = _merged_items(self, node) if self.sequence_merge else iter(node.value)
        for child in children:
            result.append(self.construct_object(child, deep=True))
            result.item_marks.append(_mark(child))


_MERGE_TAG = "tag:yaml.org,2002:merge"
# Sequences merged into sequences merged into ...: real files nest two or three.
_MAX_SEQUENCE_MERGE_DEPTH = 16


def _merge_sources(loader: LineLoader, item: Node) -> list[SequenceNode] | None:
    """The sequences a `- <<: *list` item stands for, or None for an ordinary item. Raises
    `ConstructorError` for a `<<` item Woodpecker refuses."""
    if not isinstance(item, MappingNode) or len(item.value) != 1:
        return None
    key, value = item.value[0]
    if key.tag != _MERGE_TAG:
        return None
    if isinstance(value, SequenceNode) and id(value) in loader.aliased:
        return [value]
    if isinstance(value, SequenceNode) and all(
        isinstance(v, SequenceNode) and id(v) in loader.aliased for v in value.value
    ):
        return list(value.value)
    raise yaml.constructor.ConstructorError(
        "while merging a sequence",
        item.start_mark,
        "a `<<` list item must be an alias to a sequence or a list of such aliases",
        value.start_mark,
    )


def _merged_items(loader: LineLoader, node: SequenceNode, depth: int = 0) -> Iterator[Node]:
    for child in node.value:
        sources = _merge_sources(loader, child)
        if sources is None:
            yield child
            continue
        if depth >= _MAX_SEQUENCE_MERGE_DEPTH:
            raise YamlLimitError(f"sequence merges nested deeper than {depth} levels")
        for source in sources:
            yield from _merged_items(loader, source, depth + 1)


LineLoader.add_constructor("tag:yaml.org,2002:map", LineLoader.construct_line_mapping)
LineLoader.add_constructor("tag:yaml.org,2002:seq", LineLoader.construct_line_sequence)
# Keep timestamps as the strings they were written as.
LineLoader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node) if isinstance(node, ScalarNode) else None,
)


class LocalTagLoader(LineLoader):
    """Also reads nodes with a local tag (GitLab's `!reference [.setup, script]`) as the
    plain mapping, sequence or string they are written as."""


def _untagged(loader: LineLoader, _suffix: str, node: Node) -> Any:
    if isinstance(node, MappingNode):
        return loader.construct_line_mapping(node)
    if isinstance(node, SequenceNode):
        return loader.construct_line_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


LocalTagLoader.add_multi_constructor("!", _untagged)


def load_all(text: str, sequence_merge: bool = False, local_tags: bool = False) -> Iterator[Any]:
    """Every document of a (possibly multi-document) YAML text; `sequence_merge` reads
    `- <<: *list` items as Woodpecker does, `local_tags` reads `!tag` nodes untagged.
    Raises `yaml.YAMLError`."""
    loader = (LocalTagLoader if local_tags else LineLoader)(text, sequence_merge)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            yield loader.get_data()
    except RecursionError:
        # PyYAML's composer recurses once per level: `[[[[...` a few thousand deep ends
        # Python's stack. No pipeline or manifest nests like that: malformed input.
        raise yaml.YAMLError("nested too deeply to read") from None
    finally:
        loader.dispose()


def load_one(text: str, sequence_merge: bool = False) -> Any:
    """The single document of a YAML text (None when empty). Raises `yaml.YAMLError`."""
    docs = list(load_all(text, sequence_merge))
    if len(docs) > 1:
        raise yaml.YAMLError(f"expected one YAML document, found {len(docs)}")
    return docs[0] if docs else None


def error_line(exc: yaml.YAMLError) -> int | None:
    """The 1-based line a YAML error points at, when it says."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def error_text(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error, without PyYAML's multi-line snippet."""
    problem = getattr(exc, "problem", None)
    if problem:
        context = getattr(exc, "context", None)
        return f"{context}: {problem}" if context else str(problem)
    return " ".join(str(exc).split())


def mark_of(root: Any, path: Iterator[Any] | list[Any] | tuple[Any, ...]) -> Mark | None:
    """The position of the node at `path` (keys and indexes) below `root`: the deepest
    node along the path that has one. Used to place schema errors."""
    best: Mark | None = getattr(root, "mark", None)
    node = root
    for step in path:
        if isinstance(node, LineDict) and step in node:
            best = node.value_mark(step)
            node = node[step]
        elif isinstance(node, LineList) and isinstance(step, int) and 0 <= step < len(node):
            best = node.item_mark(step)
            node = node[step]
        else:
            break
    return best
