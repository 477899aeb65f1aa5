"""Join the JSON reports of a sharded `shipsure probe` (one per shard) into one report.

Shards own disjoint repositories (`--shard I/N`), so findings are simply joined; counts add
up; the run is complete, the catalog accessible and auth accepted only when every shard
says so; the last complete run is the oldest shard's (the registry was wholly checked then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipsure.checks.scan.shard import Shard, ShardSet
from shipsure.errors import BadInputError, UsageError
from shipsure.findings import Finding, Report

_SUMMED = ("repositories", "repositories_unchecked", "tags", "tags_checked")


def is_probe_report(doc: Any) -> bool:
    return isinstance(doc, Mapping) and doc.get("command") == "probe"


def merge_probe_reports(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> Report:
    """`reports` are (file name, parsed JSON) pairs; names appear in error messages."""
    if not reports:
        raise BadInputError("report merge: no reports given")
    merged = Report("probe")
    shards = ShardSet("probed")
    meta: dict[str, Any] = {k: 0 for k in _SUMMED}
    meta.update(complete=True, catalog_accessible=True, auth_accepted=True, unchecked=[])
    requests: dict[str, int] = {}
    started: list[float] = []
    finished: list[float] = []
    last_complete: list[float | None] = []
    unmatched: list[set[str]] = []
    unknown: set[str] = set()
    for name, doc in reports:
        probe = doc.get("probe") if is_probe_report(doc) else None
        if not isinstance(probe, Mapping):
            raise BadInputError(f"{name}: not a JSON report of `shipsure probe`")
        try:
            shard = Shard.parse(str(probe.get("shard")))
        except UsageError:
            raise BadInputError(f"{name}: not a sharded probe (run with --shard I/N)") from None
        shards.add(name, shard, probe.get("registry"))
        _check_shape(name, doc, probe)
        for key in _SUMMED:
            meta[key] += int(probe.get(key) or 0)
        for key in ("complete", "catalog_accessible", "auth_accepted"):
            meta[key] = meta[key] and bool(probe.get(key, True))
        meta["unchecked"] += list(probe.get("unchecked") or [])
        # Every shard matches the globs against the whole catalog: unmatched in all is
        # unmatched (a shard that could not read the catalog lists none).
        unmatched.append({str(g) for g in probe.get("repository_globs_unmatched") or []})
        # A name probed without the catalog is asked by the shard that owns it only.
        unknown.update(str(n) for n in probe.get("repositories_unknown") or [])
        for method, n_requests in (probe.get("requests") or {}).items():
            requests[str(method)] = requests.get(str(method), 0) + int(n_requests)
        started.append(float(probe.get("started_timestamp") or 0))
        finished.append(float(probe.get("finished_timestamp") or 0))
        state = probe.get("state") or {}
        last = state.get("last_complete_timestamp")
        if last is None and probe.get("complete"):
            last = probe.get("finished_timestamp")
        last_complete.append(float(last) if last is not None else None)
        for what, value in (doc.get("checked") or {}).items():
            if isinstance(value, int):
                merged.count(str(what), value)
        merged.extend(_finding(name, item) for item in doc.get("findings") or [])
    count = shards.count_when_whole()
    known = [t for t in last_complete if t is not None]
    meta.update(
        registry=str(shards.target),
        shard=f"merged {count}",
        started_timestamp=min(started),
        finished_timestamp=max(finished),
        duration_seconds=round(max(finished) - min(started), 3),
        requests=requests,
        merged_shards=count,
        repository_globs_unmatched=sorted(set.intersection(*unmatched)),
        repositories_unknown=sorted(unknown),
        state={"last_complete_timestamp": min(known) if len(known) == count else None},
    )
    merged.meta["probe"] = meta
    return merged


def _check_shape(name: str, doc: Mapping[str, Any], probe: Mapping[str, Any]) -> None:
    """Raise BadInputError naming the file and field when a report's fields do not have
    the types `shipsure probe --format json` writes (a hand-edited or truncated report)."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def bad(field: str, want: str) -> BadInputError:
        return BadInputError(f"{name}: {field} is not {want}")

    for key in _SUMMED:
        if probe.get(key) is not None and not (number(probe[key]) and probe[key] >= 0):
            raise bad(f"probe.{key}", "a count")
    for key in ("started_timestamp", "finished_timestamp"):
        if probe.get(key) is not None and not number(probe[key]):
            raise bad(f"probe.{key}", "a time in Unix seconds")
    if not isinstance(probe.get("unchecked") or [], list):
        raise bad("probe.unchecked", "a list")
    for key in ("repository_globs_unmatched", "repositories_unknown"):
        if not isinstance(probe.get(key) or [], list):
            raise bad(f"probe.{key}", "a list")
    requests = probe.get("requests") or {}
    if not isinstance(requests, Mapping) or not all(number(v) for v in requests.values()):
        raise bad("probe.requests", "an object of counts")
    state = probe.get("state") or {}
    last = state.get("last_complete_timestamp") if isinstance(state, Mapping) else None
    if not isinstance(state, Mapping) or (last is not None and not number(last)):
        raise bad("probe.state", "an object with last_complete_timestamp in Unix seconds")
    if not isinstance(doc.get("checked") or {}, Mapping):
        raise bad("checked", "an object of counts")
    if not isinstance(doc.get("findings") or [], list):
        raise bad("findings", "a list")


def _finding(name: str, item: Any) -> Finding:
    try:
        return Finding.from_dict(item)
    except ValueError as exc:
        raise BadInputError(f"{name}: {exc}") from None
