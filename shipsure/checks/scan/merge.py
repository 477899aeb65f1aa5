"""Join the JSON reports of a sharded `shipsure scan` into one report.

Each shard reports its own repositories and lists every digest they reference; shard 0
also lists the blobs its repositories do not reference. A blob is unreferenced only when
no shard references it, so the global check happens here, once, after every shard is in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipsure.checks.scan import kinds as k
from shipsure.checks.scan.core import one_per_link, unjudged_findings
from shipsure.checks.scan.shard import Shard, ShardSet
from shipsure.checks.scan.walk import Unknown
from shipsure.errors import BadInputError, UsageError
from shipsure.findings import Finding, Report
from shipsure.storage import layout


def merge_reports(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> Report:
    """`reports` are (file name, parsed JSON) pairs; names appear in error messages."""
    if not reports:
        raise BadInputError("report merge: no reports given")
    shards = ShardSet("scanned")
    merged = Report("scan")
    referenced: set[str] = set()
    candidates: dict[str, int] = {}
    found: dict[tuple[Any, ...], Finding] = {}
    unknown: dict[str, Unknown] = {}
    first: tuple[str, Mapping[str, Any]] | None = None  # a shard's name and report
    for name, doc in reports:
        scan = doc.get("scan") if isinstance(doc, Mapping) else None
        if (
            not isinstance(doc, Mapping)
            or doc.get("command") != "scan"
            or not isinstance(scan, Mapping)
        ):
            raise BadInputError(f"{name}: not a JSON report of `shipsure scan`")
        shard_text = scan.get("shard")
        if not isinstance(shard_text, str):
            raise BadInputError(f"{name}: not a sharded scan (run with --shard I/N)")
        shard = _shard(name, shard_text)
        shards.add(name, shard, scan.get("storage"))
        if first is None:
            first = (name, doc)
        else:
            _same_run(name, doc, *first)
        for what, value in _mapping(name, "checked", doc.get("checked")).items():
            if isinstance(value, int):
                merged.count(str(what), value)
        for item in doc.get("findings") or []:
            finding = _finding(name, item)
            # Every shard reports what no repository owns (a folder of `repositories/` it
            # could not read) the same way: one of each is kept.
            found.setdefault(_identity(finding), finding)
        referenced.update(_digests(name, scan.get("referenced")))
        for u in _unknown(name, scan.get("unknown_references")):
            unknown.setdefault(u.storage_path, u)
        if shard.index == 0:
            for digest, size in _mapping(
                name, "scan.blob_candidates", scan.get("blob_candidates")
            ).items():
                if not _is_digest(digest) or type(size) is not int or not 0 <= size < 1 << 63:
                    raise BadInputError(f"{name}: malformed scan.blob_candidates ({digest!r})")
                candidates[digest] = size
    count = shards.count_when_whole()
    # In repository order, as one scan walks them, so a link several repositories' walks
    # stopped at is named by the first of them, as one scan names it.
    ordered = sorted(found.values(), key=lambda f: (f.repository is None, f.repository or ""))
    merged.extend(one_per_link(ordered))
    unreferenced = {d: candidates[d] for d in sorted(set(candidates) - referenced)}
    unjudged = unjudged_findings(list(unknown.values()), unreferenced)
    merged.extend(unjudged)
    for digest, size in unreferenced.items() if not unjudged else ():
        merged.add(
            Finding(
                kind=k.BLOB_UNREFERENCED,
                severity=k.severity(k.BLOB_UNREFERENCED, 0),
                message=f"blob {digest} ({size} bytes) is referenced by no manifest: garbage "
                "collection will delete it",
                digest=digest,
                path=(f"blob {digest}",),
                details={"storage_path": layout.blob_data(digest), "bytes": size},
            )
        )
    merged.meta["scan"] = {"storage": shards.target, "merged_shards": count}
    return merged


def _identity(f: Finding) -> tuple[Any, ...]:
    # The storage path tells apart two faults of one kind without a digest (two unreadable
    # folders, two stale temp files) and two malformed links of one digest.
    return (f.kind, f.repository, f.digest, f.reference, str(f.details.get("storage_path")))


def _shard(name: str, text: str) -> Shard:
    try:
        return Shard.parse(text)
    except UsageError:
        raise BadInputError(f"{name}: bad shard {text!r}") from None


def _same_run(name: str, doc: Mapping[str, Any], first: str, other: Mapping[str, Any]) -> None:
    """Shards of one scan: the same options, from the same shipsure (a report without
    `scan.unknown_references` comes from a version that could not say which manifests it
    could not read; mixed with newer shards, its blobs would be judged on less)."""
    if doc.get("options") != other.get("options"):
        raise BadInputError(
            f"{name}: scanned with other options than {first} ({doc.get('options')} vs "
            f"{other.get('options')}); run every shard with the same options"
        )
    if ("unknown_references" in doc["scan"]) != ("unknown_references" in other["scan"]):
        raise BadInputError(
            f"{name}: made by another shipsure version than {first}; run every shard with "
            "the same version"
        )


def _mapping(name: str, field: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadInputError(f"{name}: malformed {field} (not an object)")
    return value


def _is_digest(text: Any) -> bool:
    return isinstance(text, str) and layout.parse_link(text.encode()) is not None


def _digests(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(_is_digest(d) for d in value):
        raise BadInputError(f"{name}: malformed scan.referenced (not a list of digests)")
    return value


def _unknown(name: str, items: Any) -> list[Unknown]:
    """The shard's `unknown_references` (see walk.Unknown); absent in reports of shipsure
    versions before it (then nothing is known to be unknown, as those versions assumed)."""
    if items is None:
        return []
    try:
        return [
            Unknown(
                str(u["storage_path"]),
                None if u.get("repository") is None else str(u["repository"]),
                None if u.get("digest") is None else str(u["digest"]),
                str(u["why"]),
            )
            for u in items
        ]
    except (KeyError, TypeError, AttributeError):
        raise BadInputError(f"{name}: malformed scan.unknown_references") from None


def _finding(name: str, item: Any) -> Finding:
    try:
        return Finding.from_dict(item)
    except ValueError as exc:
        raise BadInputError(f"{name}: {exc}") from None
