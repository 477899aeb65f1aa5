"""Carrying out a restore plan: verified bytes pushed in order, each step journaled.

Order is the plan's: blobs (in parallel), then manifests one height at a time from the
leaves up, then tags. A manifest is pushed only when every step below it in the same run
succeeded, so a run stopped at any point never leaves a parent that points at nothing new.

Each step re-checks its precondition just before it runs (what is already there and
verifies is not pushed again), fetches the content from its source and verifies every
byte against the digest, then writes. A step whose finding said the content is broken
does not trust a HEAD 200 from the target: it uploads again. Re-running after a crash is
safe: the next plan starts from a fresh check, and finished steps are no-ops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from shipsure.model import Digest
from shipsure.recovery.content import VerifiedBlob, fetch_blob
from shipsure.recovery.interface import ContentSource
from shipsure.recovery.plan import MOUNT_BLOB, PUT_MANIFEST, PUT_TAG, UPLOAD_BLOB, Step
from shipsure.registry.http import HttpRegistry
from shipsure.registry.interface import NotFoundError, RegistryError
from shipsure.registry.push import Pusher


class Journal(Protocol):
    """Where each step's start and outcome are recorded before the run moves on."""

    def record(self, state: str, step: dict[str, Any], reason: str = "") -> None: ...


@dataclass(frozen=True)
class Outcome:
    step: Step
    result: str  # "done", "already-done", "failed", "skipped"
    reason: str = ""
    bytes_moved: int = 0


def apply_plan(
    steps: Sequence[Step],
    target: HttpRegistry,
    sources: Sequence[ContentSource],
    journal: Journal,
    *,
    workers: int = 4,
    manifests_by_digest: Callable[[str, str], bytes | None] | None = None,
    pusher: Pusher | None = None,
) -> list[Outcome]:
    """Apply `steps` (a plan's, in its order). `manifests_by_digest(repository, digest)`
    gives the verified manifest bytes the plan read."""
    runner = _Runner(target, sources, journal, pusher or Pusher(target), manifests_by_digest)
    outcomes: list[Outcome] = []
    blob_steps = [s for s in steps if s.op in (UPLOAD_BLOB, MOUNT_BLOB)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes += list(pool.map(runner.run, blob_steps))
        failed = {(o.step.repository, o.step.digest) for o in outcomes if o.result == "failed"}
        levels = sorted({s.height for s in steps if s.op in (PUT_MANIFEST, PUT_TAG)})
        for height in levels:
            level = [s for s in steps if s.op in (PUT_MANIFEST, PUT_TAG) and s.height == height]
            ready: list[Step] = []
            for step in level:
                if failed:
                    # A child (or a blob) of this run failed: pushing a parent now could
                    # leave it pointing at nothing; the next run plans it again.
                    outcome = Outcome(step, "skipped", "an earlier step of this run failed")
                    journal.record(outcome.result, step.to_dict(), outcome.reason)
                    outcomes.append(outcome)
                else:
                    ready.append(step)
            done = list(pool.map(runner.run, ready))
            outcomes += done
            failed |= {(o.step.repository, o.step.digest) for o in done if o.result == "failed"}
    return outcomes


class _Runner:
    def __init__(
        self,
        target: HttpRegistry,
        sources: Sequence[ContentSource],
        journal: Journal,
        pusher: Pusher,
        manifests: Callable[[str, str], bytes | None] | None,
    ) -> None:
        self.target = target
        self.sources = sources
        self.journal = journal
        self.pusher = pusher
        self.manifests = manifests
        self._journal_lock = threading.Lock()

    def _record(self, state: str, step: Step, reason: str = "") -> None:
        with self._journal_lock:
            self.journal.record(state, step.to_dict(), reason)

    def run(self, step: Step) -> Outcome:
        self._record("start", step)
        try:
            outcome = self._run(step)
        except RegistryError as exc:
            outcome = Outcome(step, "failed", str(exc))
        self._record(outcome.result, step, outcome.reason)
        return outcome

    def _run(self, step: Step) -> Outcome:
        digest = Digest.parse(step.digest)
        if step.op == MOUNT_BLOB:
            if not step.untrusted_head and self._blob_present(step, digest):
                return Outcome(step, "already-done", "the target answers for it now")
            origin = step.source.removeprefix("repository:")
            if self.pusher.mount_blob(step.repository, digest, origin):
                return Outcome(step, "done", f"mounted from {origin}")
            return self._upload(step, digest, "mount declined; uploaded")
        if step.op == UPLOAD_BLOB:
            if not step.untrusted_head and self._blob_present(step, digest):
                return Outcome(step, "already-done", "the target answers for it now")
            return self._upload(step, digest, "")
        raw = self.manifests(step.repository, step.digest) if self.manifests else None
        if raw is None or not digest.matches(raw):
            return Outcome(step, "failed", "the plan's verified manifest bytes are missing")
        if step.op == PUT_MANIFEST and not step.untrusted_head and self._manifest_present(step):
            return Outcome(step, "already-done", "the target serves it intact now")
        if step.op == PUT_TAG and self._tag_points_to(step):
            return Outcome(step, "already-done", "the tag resolves to it now")
        self.pusher.put_manifest(step.repository, step.reference, step.media_type, raw)
        return Outcome(step, "done", "", len(raw))

    def _upload(self, step: Step, digest: Digest, note: str) -> Outcome:
        fetched = fetch_blob(self.sources, step.repository, digest, step.size)
        if not isinstance(fetched, VerifiedBlob):
            why = "no source holds it"
            if isinstance(fetched, list):
                why = "; ".join(f"{r.source}: {r.reason}" for r in fetched)
            return Outcome(step, "failed", f"no verified copy: {why}")
        try:
            self.pusher.upload_blob(step.repository, digest, step.size, fetched.content)
        finally:
            fetched.close()
        return Outcome(step, "done", note or f"from {fetched.source}", step.size)

    def _blob_present(self, step: Step, digest: Digest) -> bool:
        """Planned as missing (a 404 then): present now means this or another run put it
        there. Still read in full: a stale cache answers HEAD for data that is gone."""
        try:
            read = self.target.read_blob(step.repository, digest, limit=step.size)
        except NotFoundError:
            return False
        return read.size == step.size and read.digest == digest

    def _manifest_present(self, step: Step) -> bool:
        try:
            answer = self.target.get_manifest(step.repository, step.digest)
        except NotFoundError:
            return False
        return Digest.parse(step.digest).matches(answer.raw)

    def _tag_points_to(self, step: Step) -> bool:
        try:
            head = self.target.head_manifest(step.repository, step.reference)
        except NotFoundError:
            return False
        return head.digest == step.digest


class FileJournal:
    """Append-only JSON lines, fsync'd after each (until the shared plan module's journal
    takes over, this is the one restore writes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def record(self, state: str, step: dict[str, Any], reason: str = "") -> None:
        from shipsure.fileio import append_json_line

        entry: dict[str, object] = {"time": time.time(), "state": state, **step}
        if reason:
            entry["reason"] = reason
        append_json_line(self.path, entry)
