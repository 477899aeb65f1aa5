"""What the previous probe run saw, so each report says what is new, what recovered, since when.

The state file is JSON, replaced atomically (temp file, fsync, rename) after each run, so a
crash leaves the previous state. It holds the integrity findings by identity (kind,
repository, digest or tag) with when each was first and last seen, the probe states
present and since when, the run count (which rotates `--deep-sample`) and when the last
complete run finished (kept across partial runs: it is what "probe stale" watches).

A finding of the previous run that is absent now is *recovered* only when this run checked
its tags (clean, or no longer listed); when they could not be checked it is carried over
as *not checked*, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipsure.checks.verify import BLOB_DIGEST_MISMATCH, BLOB_SIZE_MISMATCH, BLOB_TRUNCATED
from shipsure.errors import BadInputError, CouldNotRunError
from shipsure.fileio import read_regular, write_atomic
from shipsure.findings import Finding, Report

STATE_VERSION = 1
MAX_STATE_BYTES = 256 * 1024 * 1024

# Values of a finding's `details.change`.
NEW = "new"
ONGOING = "ongoing"


@dataclass
class ProbeState:
    registry: str
    shard: str
    runs: int = 0
    last_complete_timestamp: float | None = None
    # identity -> {"kind", "repository", "digest", "tags", "first_seen", "last_seen"}
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # probe state (e.g. "catalog-inaccessible") -> since (Unix seconds)
    states: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "registry": self.registry,
            "shard": self.shard,
            "runs": self.runs,
            "last_complete_timestamp": self.last_complete_timestamp,
            "findings": self.findings,
            "states": self.states,
        }


def identity(finding: Finding) -> str:
    """Stable across runs: kind, repository, and the digest (or, without one, the tag)."""
    tags = _tags(finding)
    what = finding.digest or ("tag " + ",".join(tags) if tags else finding.reference or "")
    return f"{finding.kind} {finding.repository or ''} {what}"


def _tags(finding: Finding) -> list[str]:
    return sorted(p[4:] for p in finding.path[:1] if p.startswith("tag "))


def load_state(path: str | Path) -> ProbeState | None:
    """The state in `path`, or None when the file does not exist yet.

    Raises BadInputError for a file that is not a probe state (the user named it).
    """
    try:
        raw = read_regular(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInputError(f"--state {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadInputError(f"--state {path}: not a probe state file (not JSON)") from None
    if (
        len(raw) > MAX_STATE_BYTES
        or not isinstance(doc, dict)
        or doc.get("version") != STATE_VERSION
        or not isinstance(doc.get("findings"), dict)
        or not isinstance(doc.get("states"), dict)
        or not isinstance(doc.get("runs"), int)
    ):
        raise BadInputError(f"--state {path}: not a probe state file of version {STATE_VERSION}")
    last = doc.get("last_complete_timestamp")
    for key, entry in doc["findings"].items():
        # Checked here, before the registry is walked: a bad entry found after the walk
        # would waste the run and end in a traceback.
        problem = _entry_problem(entry)
        if problem:
            raise BadInputError(f"--state {path}: finding {key!r}: {problem}")
    return ProbeState(
        registry=str(doc.get("registry") or ""),
        shard=str(doc.get("shard") or ""),
        runs=doc["runs"],
        last_complete_timestamp=float(last) if last is not None and _is_time(last) else None,
        findings=dict(doc["findings"]),
        states={str(k): float(v) for k, v in doc["states"].items() if _is_time(v)},
    )


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11


def _entry_problem(entry: Any) -> str | None:
    """Why a saved finding cannot be used, or None: the shape `advance` writes."""
    if not isinstance(entry, dict):
        return "not an object"
    for name in ("first_seen", "last_seen"):
        if not _is_time(entry.get(name)):
            return f"{name} is not a time in Unix seconds"
    if not isinstance(entry.get("kind"), str):
        return "kind is not a string"
    for name in ("repository", "digest"):
        if entry.get(name) is not None and not isinstance(entry.get(name), str):
            return f"{name} is not a string"
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return "tags is not a list of strings"
    return None


def save_state(path: str | Path, state: ProbeState) -> None:
    data = (json.dumps(state.to_dict(), indent=1, sort_keys=True) + "\n").encode()
    try:
        write_atomic(path, data, mode=0o644)
    except OSError as exc:
        raise CouldNotRunError(f"--state {path}: could not write: {exc.strerror or exc}") from None


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def advance(report: Report, previous: ProbeState | None) -> ProbeState:
    """Mark `report`'s findings new or ongoing (with `since`), list what recovered and
    what could not be checked again, and return the state to save for the next run.

    Reads `report.meta["probe"]` (see `checks.probe.probe`); run it with the previous
    state's repositories in `ProbeOptions.remember_tags_of`.
    """
    meta = report.meta["probe"]
    now = float(meta["finished_timestamp"])
    if previous is not None and (
        previous.registry != meta["registry"] or previous.shard != meta["shard"]
    ):
        raise BadInputError(
            f"--state holds {previous.registry} shard {previous.shard}, not "
            f"{meta['registry']} shard {meta['shard']}: use one state file per probe"
        )
    before = previous or ProbeState(registry=meta["registry"], shard=meta["shard"])
    state = ProbeState(
        registry=meta["registry"],
        shard=meta["shard"],
        runs=before.runs + 1,
        last_complete_timestamp=now if meta["complete"] else before.last_complete_timestamp,
    )
    annotated: list[Finding] = []
    for finding in report.findings:
        if finding.is_check_error:
            name = str(finding.details.get("state", ""))
            if name:
                state.states.setdefault(name, before.states.get(name, now))
                since = state.states[name]
                finding = _mark(finding, ONGOING if name in before.states else NEW, since)
            annotated.append(finding)
            continue
        key = identity(finding)
        old = before.findings.get(key)
        first = float(old["first_seen"]) if old else now
        state.findings[key] = {
            "kind": finding.kind,
            "repository": finding.repository,
            "digest": finding.digest,
            "tags": _tags(finding) + _also_tags(finding),
            "first_seen": first,
            "last_seen": now,
        }
        annotated.append(_mark(finding, ONGOING if old else NEW, first))
    report.findings[:] = annotated

    remembered: Mapping[str, Mapping[str, list[str]]] = meta.get("remembered", {})
    recovered: list[dict[str, Any]] = []
    not_checked: list[dict[str, Any]] = []
    for key, old in sorted(before.findings.items()):
        if key in state.findings:
            continue
        repo = str(old.get("repository") or "")
        seen = remembered.get(repo)
        tags = set(old.get("tags") or [])
        if seen is not None:
            checked = "*" not in seen["unchecked"] and not tags & set(seen["unchecked"])
        else:
            # Not listed at all: gone, if the catalog was read in full.
            checked = bool(meta["catalog_accessible"])
        entry = {**old, "first_seen": iso(float(old["first_seen"]))}
        entry["last_seen"] = iso(float(old["last_seen"]))
        if checked:
            recovered.append({**entry, "recovered": iso(now)})
        else:
            not_checked.append(entry)
            state.findings[key] = old
    meta["state"] = {
        "runs": state.runs,
        "previous_runs": before.runs,
        "new": sum(1 for f in report.findings if f.details.get("change") == NEW),
        "ongoing": sum(1 for f in report.findings if f.details.get("change") == ONGOING),
        "recovered": recovered,
        "not_checked_again": not_checked,
        "last_complete_timestamp": state.last_complete_timestamp,
        "states_since": {k: iso(v) for k, v in sorted(state.states.items())},
    }
    return state


# Kinds only a re-hash finds: a sampled run must re-hash these blobs to call them recovered.
DEEP_KINDS = frozenset({BLOB_DIGEST_MISMATCH, BLOB_TRUNCATED, BLOB_SIZE_MISMATCH})


def digests_to_rehash(previous: ProbeState | None) -> frozenset[str]:
    if previous is None:
        return frozenset()
    return frozenset(
        str(v["digest"])
        for v in previous.findings.values()
        if v.get("kind") in DEEP_KINDS and v.get("digest")
    )


def repositories_to_remember(previous: ProbeState | None) -> frozenset[str]:
    if previous is None:
        return frozenset()
    return frozenset(str(v.get("repository") or "") for v in previous.findings.values())


def _also_tags(finding: Finding) -> list[str]:
    out = []
    for path in finding.details.get("also_referenced_by", []):
        head = str(path).split(" -> ", 1)[0]
        if head.startswith("tag "):
            out.append(head[4:])
    return out


def _mark(finding: Finding, change: str, since: float) -> Finding:
    details = {**finding.details, "change": change, "since": iso(since)}
    return replace(finding, details=details)
