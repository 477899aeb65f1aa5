"""serve's state in one SQLite file (standard library): it survives restarts.

Tables:
- `findings`: every integrity finding by identity (kind, repository, digest or tag; the
  probe's `identity()`), with `first_seen`, `last_seen` and `resolved` (Unix seconds). A
  restart keeps "since when": a finding seen again keeps its first-seen time; one that was
  resolved and comes back is a new incident with a new first-seen time.
- `tags`: each repository and tag with its state (`healthy`, `broken`, `could not check`),
  since when, the digest and when it was last checked.
- `probes`: the last runs' summaries; `last_probe`: the last run's whole report (what
  /metrics exports in the probe's metric families).
- `pushes`: the most recent push verifications.
- `pending`: pushes still queued at shutdown, verified after the restart.

Bounded: resolved findings are kept `resolved_retention` seconds, `max_pushes` push
verifications and `max_probes` probe summaries; tags and open findings are what the
registry holds. Writes are one transaction each (WAL journal); one connection is shared
under a lock by the worker threads and the HTTP threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipsure.checks.probe_state import identity
from shipsure.errors import BadInputError, CouldNotRunError
from shipsure.findings import Finding, Report, Severity
from shipsure.serve.pushqueue import PushJob

SCHEMA_VERSION = 1

HEALTHY = "healthy"
BROKEN = "broken"
UNCHECKED = "could not check"
TAG_STATES = (BROKEN, UNCHECKED, HEALTHY)

DEFAULT_MAX_PUSHES = 1000
DEFAULT_MAX_PROBES = 100
DEFAULT_RESOLVED_RETENTION = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS findings (
    identity TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    digest TEXT,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    tags TEXT NOT NULL,
    root TEXT NOT NULL,
    finding TEXT NOT NULL,
    source TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    resolved REAL
);
CREATE INDEX IF NOT EXISTS findings_open ON findings (resolved, repository);
CREATE TABLE IF NOT EXISTS tags (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    checked REAL NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (repository, tag)
);
CREATE TABLE IF NOT EXISTS probes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    complete INTEGER NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS last_probe (id INTEGER PRIMARY KEY CHECK (id = 1), report TEXT);
CREATE TABLE IF NOT EXISTS pushes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    started REAL NOT NULL,
    verified REAL NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    tags TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    problems INTEGER NOT NULL,
    check_errors INTEGER NOT NULL,
    events INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    tags TEXT NOT NULL,
    kind TEXT NOT NULL,
    media_type TEXT,
    received REAL NOT NULL,
    PRIMARY KEY (repository, digest)
);
"""


@dataclass(frozen=True)
class StoredFinding:
    """An open (or resolved) finding as stored: the finding's JSON plus its times."""

    identity: str
    finding: dict[str, Any]
    tags: tuple[str, ...]
    source: str
    first_seen: float
    last_seen: float
    resolved: float | None

    @property
    def repository(self) -> str:
        return str(self.finding.get("repository") or "")

    @property
    def kind(self) -> str:
        return str(self.finding.get("kind"))

    @property
    def severity(self) -> str:
        return str(self.finding.get("severity"))


@dataclass(frozen=True)
class TagState:
    repository: str
    tag: str
    digest: str | None
    state: str
    since: float
    checked: float
    source: str


@dataclass(frozen=True)
class PushRecord:
    received: float
    started: float
    verified: float
    repository: str
    digest: str
    tags: tuple[str, ...]
    kind: str
    outcome: str
    problems: int
    check_errors: int
    events: int


@dataclass(frozen=True)
class ProbeRecord:
    started: float
    finished: float
    complete: bool
    summary: dict[str, Any]


class Store:
    """Open (creating) the state file at `path`; raises CouldNotRunError when it cannot."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_pushes: int = DEFAULT_MAX_PUSHES,
        max_probes: int = DEFAULT_MAX_PROBES,
        resolved_retention: float = DEFAULT_RESOLVED_RETENTION,
    ) -> None:
        self.path = str(path)
        self.max_pushes = max(1, max_pushes)
        self.max_probes = max(1, max_probes)
        self.resolved_retention = resolved_retention
        self._lock = threading.Lock()
        if self.path != ":memory:" and Path(self.path).is_dir():
            raise BadInputError(f"--state {self.path}: a folder; give the state file's path")
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise CouldNotRunError(
                    f"--state {self.path}: state of schema {row[0]}, this shipsure reads "
                    f"{SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc):
                raise CouldNotRunError(f"--state {self.path}: cannot open: {exc}") from None
            # Another file given by mistake (probe's JSON state, say): the user's input.
            raise BadInputError(
                f"--state {self.path}: not a serve state file (SQLite): {exc}"
            ) from None
        except (sqlite3.Error, OSError) as exc:
            raise CouldNotRunError(f"--state {self.path}: cannot open: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- writes -----------------------------------------------------------------------

    def record_push(self, job: PushJob, report: Report, started: float, finished: float) -> str:
        """Record one push verification; return its outcome (a tag state).

        Findings of the walk are opened (or seen again); findings this push's tree had
        before and no longer has are resolved, and so are findings of exactly the tags it
        re-pushed. Nothing is resolved when part of the walk could not be checked.
        """
        problems = [f for f in report.problems if f.severity >= Severity.WARNING]
        errors = report.check_errors
        outcome = BROKEN if problems else UNCHECKED if errors else HEALTHY
        tags = sorted(job.tags)
        with self._transaction() as db:
            seen = {
                self._upsert_finding(db, f, tags, job.digest, "push", finished) for f in problems
            }
            if not errors:
                for ident, found_tags, root in db.execute(
                    "SELECT identity, tags, root FROM findings "
                    "WHERE resolved IS NULL AND repository = ?",
                    (job.repository,),
                ).fetchall():
                    if ident in seen:
                        continue
                    old_tags = set(json.loads(found_tags))
                    if root == job.digest or (old_tags and old_tags <= job.tags):
                        db.execute(
                            "UPDATE findings SET resolved = ? WHERE identity = ?",
                            (finished, ident),
                        )
            for tag in tags:
                self._set_tag(db, job.repository, tag, job.digest, outcome, finished, "push")
            db.execute(
                "INSERT INTO pushes (received, started, verified, repository, digest, tags, "
                "kind, outcome, problems, check_errors, events) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.received,
                    started,
                    finished,
                    job.repository,
                    job.digest,
                    json.dumps(tags),
                    job.kind,
                    outcome,
                    len(problems),
                    len(errors),
                    job.events,
                ),
            )
            db.execute(
                "DELETE FROM pushes WHERE id <= (SELECT MAX(id) FROM pushes) - ?",
                (self.max_pushes,),
            )
            self._prune_resolved(db, finished)
        return outcome

    def record_probe(self, report: Report) -> None:
        """Record a finished probe run (`checks.probe.probe` with every repository's tags
        remembered): findings opened and resolved, tag states, the run's summary."""
        meta: Mapping[str, Any] = report.meta.get("probe", {})
        now = float(meta.get("finished_timestamp") or 0.0)
        remembered: Mapping[str, Mapping[str, list[str]]] = meta.get("remembered") or {}
        unchecked_repos = {
            str(e.get("repository")) for e in meta.get("unchecked", []) if isinstance(e, dict)
        }
        catalog_read = bool(meta.get("catalog_accessible"))
        problems = [f for f in report.problems if f.severity >= Severity.WARNING]
        broken: dict[tuple[str, str], str | None] = {}
        for f in problems:
            for tag in _path_tags(f):
                broken[(f.repository or "", tag)] = None
        with self._transaction() as db:
            seen = set()
            for f in problems:
                seen.add(self._upsert_finding(db, f, _path_tags(f), "", "probe", now))
            for ident, repo, found_tags in db.execute(
                "SELECT identity, repository, tags FROM findings WHERE resolved IS NULL"
            ).fetchall():
                if ident in seen:
                    continue
                listed = remembered.get(repo)
                tags = set(json.loads(found_tags))
                if listed is not None:
                    # The probe walks tags only: a finding of a manifest pushed by digest
                    # (no tag) is left to the next verification of that push.
                    checked = (
                        bool(tags)
                        and "*" not in listed["unchecked"]
                        and not tags & set(listed["unchecked"])
                    )
                else:
                    # The repository is not in the catalog any more.
                    checked = (
                        catalog_read
                        and bool(meta.get("complete"))
                        and (repo not in unchecked_repos)
                    )
                if checked:
                    db.execute("UPDATE findings SET resolved = ? WHERE identity = ?", (now, ident))
            for repo, listed in remembered.items():
                present: set[str] = set()
                for tag in listed.get("clean", []):
                    present.add(tag)
                    self._set_tag(db, repo, tag, None, HEALTHY, now, "probe")
                for tag in listed.get("unchecked", []):
                    present.add(tag)
                    self._set_tag(db, repo, tag, None, UNCHECKED, now, "probe")
                for (brepo, tag), _ in broken.items():
                    if brepo == repo:
                        present.add(tag)
                        self._set_tag(db, repo, tag, None, BROKEN, now, "probe")
                # Tags the registry no longer lists (deleted since) leave the page, unless
                # a push recorded them after this run started.
                started = float(meta.get("started_timestamp") or now)
                for (tag,) in db.execute(
                    "SELECT tag FROM tags WHERE repository = ? AND checked < ?", (repo, started)
                ).fetchall():
                    if tag not in present:
                        db.execute("DELETE FROM tags WHERE repository = ? AND tag = ?", (repo, tag))
            if catalog_read and meta.get("complete"):
                started = float(meta.get("started_timestamp") or now)
                # Repositories the catalog no longer lists are gone.
                db.execute(
                    "DELETE FROM tags WHERE checked < ? AND repository NOT IN "
                    "(SELECT value FROM json_each(?))",
                    (started, json.dumps(sorted(set(remembered) | unchecked_repos))),
                )
            summary = {k: v for k, v in meta.items() if k not in ("remembered",)}
            summary["findings"] = len(problems)
            summary["check_errors"] = len(report.check_errors)
            summary["checked"] = dict(report.checked)
            db.execute(
                "INSERT INTO probes (started, finished, complete, summary) VALUES (?, ?, ?, ?)",
                (
                    float(meta.get("started_timestamp") or now),
                    now,
                    1 if meta.get("complete") else 0,
                    json.dumps(summary),
                ),
            )
            db.execute(
                "DELETE FROM probes WHERE id <= (SELECT MAX(id) FROM probes) - ?",
                (self.max_probes,),
            )
            slim = report.to_dict()
            slim.get("probe", {}).pop("remembered", None)
            db.execute(
                "INSERT OR REPLACE INTO last_probe (id, report) VALUES (1, ?)", (json.dumps(slim),)
            )
            self._prune_resolved(db, now)

    def _upsert_finding(
        self,
        db: sqlite3.Connection,
        finding: Finding,
        tags: Sequence[str],
        root: str,
        source: str,
        now: float,
    ) -> str:
        ident = identity(finding)
        row = db.execute(
            "SELECT first_seen, resolved, tags FROM findings WHERE identity = ?", (ident,)
        ).fetchone()
        doc = finding.to_dict()
        if row is None or row[1] is not None:
            db.execute(
                "INSERT OR REPLACE INTO findings (identity, repository, digest, kind, "
                "severity, tags, root, finding, source, first_seen, last_seen, resolved) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    ident,
                    finding.repository or "",
                    finding.digest,
                    finding.kind,
                    finding.severity.label,
                    json.dumps(sorted(set(tags))),
                    root,
                    json.dumps(doc),
                    source,
                    now,
                    now,
                ),
            )
        else:
            merged = sorted(set(json.loads(row[2])) | set(tags))
            db.execute(
                "UPDATE findings SET tags = ?, finding = ?, source = ?, last_seen = ?, "
                "root = CASE WHEN ? != '' THEN ? ELSE root END WHERE identity = ?",
                (json.dumps(merged), json.dumps(doc), source, now, root, root, ident),
            )
        return ident

    def _set_tag(
        self,
        db: sqlite3.Connection,
        repository: str,
        tag: str,
        digest: str | None,
        state: str,
        now: float,
        source: str,
    ) -> None:
        db.execute(
            "INSERT INTO tags (repository, tag, digest, state, since, checked, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET "
            "since = CASE WHEN tags.state = excluded.state THEN tags.since ELSE excluded.since "
            "END, state = excluded.state, checked = excluded.checked, "
            "source = excluded.source, digest = COALESCE(excluded.digest, tags.digest)",
            (repository, tag, digest, state, now, now, source),
        )

    def _prune_resolved(self, db: sqlite3.Connection, now: float) -> None:
        db.execute(
            "DELETE FROM findings WHERE resolved IS NOT NULL AND resolved < ?",
            (now - self.resolved_retention,),
        )

    def save_pending(self, jobs: Iterable[PushJob]) -> int:
        rows = [
            (j.repository, j.digest, json.dumps(sorted(j.tags)), j.kind, j.media_type, j.received)
            for j in jobs
        ]
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO pending (repository, digest, tags, kind, media_type, "
                "received) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def take_pending(self) -> list[PushJob]:
        """Jobs saved at the last shutdown (removed from the file: they are queued again)."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT repository, digest, tags, kind, media_type, received FROM pending"
            ).fetchall()
            db.execute("DELETE FROM pending")
        return [
            PushJob(
                repository=r[0],
                digest=r[1],
                tags=set(json.loads(r[2])),
                kind=r[3],
                media_type=r[4],
                received=r[5],
                last_received=r[5],
            )
            for r in rows
        ]

    # --- reads ------------------------------------------------------------------------

    def open_findings(self) -> list[StoredFinding]:
        return [
            _stored(r)
            for r in self._query(
                "SELECT identity, finding, tags, source, first_seen, last_seen, resolved "
                "FROM findings WHERE resolved IS NULL ORDER BY repository, first_seen, identity"
            )
        ]

    def resolved_findings(self, limit: int = 100) -> list[StoredFinding]:
        return [
            _stored(r)
            for r in self._query(
                "SELECT identity, finding, tags, source, first_seen, last_seen, resolved "
                "FROM findings WHERE resolved IS NOT NULL ORDER BY resolved DESC LIMIT ?",
                (limit,),
            )
        ]

    def tag_states(self, search: str = "", limit: int = 1000) -> tuple[list[TagState], int]:
        """Tags matching `search` (substring of repository, tag or digest; case-insensitive),
        broken first; and how many matched in all."""
        like = f"%{_escape_like(search.lower())}%"
        where = (
            "WHERE lower(repository) LIKE ? ESCAPE '\\' OR lower(tag) LIKE ? ESCAPE '\\' "
            "OR lower(COALESCE(digest, '')) LIKE ? ESCAPE '\\'"
        )
        params = (like, like, like)
        total = self._query(f"SELECT COUNT(*) FROM tags {where}", params)[0][0]
        rows = self._query(
            "SELECT repository, tag, digest, state, since, checked, source FROM tags "
            f"{where} ORDER BY CASE state WHEN '{BROKEN}' THEN 0 WHEN '{UNCHECKED}' THEN 1 "
            "ELSE 2 END, repository, tag LIMIT ?",
            (*params, limit),
        )
        return [TagState(*r) for r in rows], int(total)

    def tag_state_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(TAG_STATES, 0)
        for state, n in self._query("SELECT state, COUNT(*) FROM tags GROUP BY state"):
            counts[str(state)] = int(n)
        return counts

    def recent_pushes(self, limit: int = 50) -> list[PushRecord]:
        rows = self._query(
            "SELECT received, started, verified, repository, digest, tags, kind, outcome, "
            "problems, check_errors, events FROM pushes ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            PushRecord(
                received=r[0],
                started=r[1],
                verified=r[2],
                repository=r[3],
                digest=r[4],
                tags=tuple(json.loads(r[5])),
                kind=r[6],
                outcome=r[7],
                problems=r[8],
                check_errors=r[9],
                events=r[10],
            )
            for r in rows
        ]

    def push_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM pushes")[0][0])

    def recent_probes(self, limit: int = 10) -> list[ProbeRecord]:
        rows = self._query(
            "SELECT started, finished, complete, summary FROM probes ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [ProbeRecord(r[0], r[1], bool(r[2]), json.loads(r[3])) for r in rows]

    def last_complete_probe(self) -> float | None:
        row = self._query("SELECT MAX(finished) FROM probes WHERE complete = 1")
        return float(row[0][0]) if row and row[0][0] is not None else None

    def last_probe_report(self) -> Report | None:
        rows = self._query("SELECT report FROM last_probe WHERE id = 1")
        if not rows or rows[0][0] is None:
            return None
        return report_from_dict(json.loads(rows[0][0]))


def _stored(row: Sequence[Any]) -> StoredFinding:
    return StoredFinding(
        identity=row[0],
        finding=json.loads(row[1]),
        tags=tuple(json.loads(row[2])),
        source=row[3],
        first_seen=row[4],
        last_seen=row[5],
        resolved=row[6],
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _path_tags(finding: Finding) -> list[str]:
    heads = [finding.path[0]] if finding.path else []
    heads += [str(p).split(" -> ", 1)[0] for p in finding.details.get("also_referenced_by", [])]
    return sorted({h[4:] for h in heads if h.startswith("tag ")})


def report_from_dict(doc: Mapping[str, Any]) -> Report:
    """The `Report` a `Report.to_dict()` came from (findings, counts, run facts)."""
    report = Report(command=str(doc.get("command", "")))
    report.checked.update({str(k): int(v) for k, v in (doc.get("checked") or {}).items()})
    for key, value in doc.items():
        if key not in ("command", "checked", "findings"):
            report.meta[key] = value
    for item in doc.get("findings") or []:
        # Written by this process from a Report: a finding that does not read back is a
        # bug, so ValueError is not caught here.
        report.add(Finding.from_dict(item))
    return report
