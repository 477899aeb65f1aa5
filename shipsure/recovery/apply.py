"""Carrying out a restore plan through `shipsure.plan`: verified bytes pushed in order,
each step journaled (intent before, result after).

Order is the plan's: blobs, then manifests one height at a time from the leaves up, then
tags; each phase is one `shipsure.plan.Plan` applied only when every step of the phases
below it succeeded, so a run stopped at any point never leaves a parent that points at
nothing new.

Each step re-checks its precondition just before it runs (`RestoreWriter.check`: what is
already there and verifies is not pushed again), fetches the content from its source and
verifies every byte against the digest, then writes. A step whose finding said the content
is broken does not trust a HEAD 200 from the target: it uploads again. Re-running after a
crash is safe: the next plan starts from a fresh check, and finished steps are no-ops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shipsure import plan as writes
from shipsure.errors import ShipsureError
from shipsure.model import Digest
from shipsure.recovery.content import VerifiedBlob, fetch_blob
from shipsure.recovery.interface import ContentSource
from shipsure.recovery.plan import MOUNT_BLOB, PUT_MANIFEST, PUT_TAG, UPLOAD_BLOB, Step
from shipsure.registry.http import HttpRegistry
from shipsure.registry.interface import NotFoundError, RegistryError
from shipsure.registry.push import Pusher, PushError

WRITER = "restore"


@dataclass(frozen=True)
class Outcome:
    step: Step
    result: str  # "done", "already-done", "failed", "skipped"
    reason: str = ""
    bytes_moved: int = 0


def action_of(step: Step) -> writes.Action:
    where = f"{step.repository}:{step.reference}" if step.op == PUT_TAG else step.repository
    return writes.Action(step.op, f"{where}@{step.digest}", step.reason, step.to_dict())


def apply_plan(
    steps: Sequence[Step],
    target: HttpRegistry,
    sources: Sequence[ContentSource],
    journal: writes.Journal,
    *,
    workers: int = 4,
    manifests_by_digest: Callable[[str, str], bytes | None] | None = None,
    pusher: Pusher | None = None,
) -> list[Outcome]:
    """Apply `steps` (a plan's, in its order), `workers` steps of a phase at a time.
    `manifests_by_digest(repository, digest)` gives the verified manifest bytes the plan
    read. Raises `JournalError`."""
    runner = _Runner(target, sources, pusher or Pusher(target), manifests_by_digest)
    runner.steps = {action_of(s).key: s for s in steps}
    # Intents a killed run left open and this plan does not hold again are settled first
    # (re-checked), once; the phases' plans then run side by side without re-reading them.
    shared = _SettledJournal(journal.path, set(runner.steps))
    writes.apply(writes.Plan(WRITER, []), runner, shared)
    phases: list[list[Step]] = [[s for s in steps if s.op in (UPLOAD_BLOB, MOUNT_BLOB)]]
    heights = sorted({s.height for s in steps if s.op in (PUT_MANIFEST, PUT_TAG)})
    phases += [
        [s for s in steps if s.op in (PUT_MANIFEST, PUT_TAG) and s.height == h] for h in heights
    ]
    outcomes: list[Outcome] = []
    failed = False
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for phase in phases:
            if not phase:
                continue
            if failed:
                # A step below failed: pushing a parent now could leave it pointing at
                # nothing; the next run plans it again.
                why = "an earlier step of this run failed"
                outcomes += [Outcome(s, "skipped", why) for s in phase]
                continue
            shares = [phase[i :: max(1, workers)] for i in range(max(1, workers))]
            done = pool.map(
                lambda share: writes.apply(
                    writes.Plan(WRITER, [action_of(s) for s in share]), runner, shared
                ),
                [share for share in shares if share],
            )
            for outcome in (o for results in done for o in results):
                step = runner.steps[outcome.action.key]
                result = _RESULTS.get(str(outcome.result), str(outcome.result))
                moved = runner.moved.get(outcome.action.key, 0) if result == "done" else 0
                reason = outcome.reason or runner.notes.get(outcome.action.key, "")
                outcomes.append(Outcome(step, result, reason, moved))
                failed = failed or result in ("failed", "skipped")
    return outcomes


_RESULTS = {"refused": "skipped", "abandoned": "skipped"}


def still_broken(target: HttpRegistry, outcomes: Sequence[Outcome]) -> list[Step]:
    """Pushes that were to replace broken content, read back: those still broken.

    distribution keeps a data file that exists, whatever it holds: a blob upload whose data
    file is there is a no-op (blobwriter.go moveBlob: "While it may be corrupted, detection
    of such corruption belongs elsewhere"), and so is a manifest PUT (blobstore.go Put:
    "content already present"). Observed on 2.8.2 and v3.1.2 (registry-facts §3): corrupted
    data survives a re-push, so the data file must be removed from storage first."""
    kept: list[Step] = []
    for outcome in outcomes:
        step = outcome.step
        if outcome.result != "done" or not step.untrusted_head:
            continue
        digest = Digest.parse(step.digest)
        try:
            if step.op in (UPLOAD_BLOB, MOUNT_BLOB):
                read = target.read_blob(step.repository, digest, limit=step.size)
                intact = read.size == step.size and read.digest == digest
            else:
                intact = digest.matches(target.get_manifest(step.repository, step.digest).raw)
        except RegistryError:
            intact = False
        if not intact:
            kept.append(step)
    return kept


class _SettledJournal(writes.Journal):
    """The journal, whose open intents are handed out once (without this plan's own)."""

    def __init__(self, path: Path, planned: set[str]) -> None:
        super().__init__(path)
        self._planned = planned
        self._settled = False
        self._lock = threading.Lock()

    def open_intents(self, writer: str) -> list[writes.Action]:
        with self._lock:
            if self._settled:
                return []
            self._settled = True
        return [a for a in super().open_intents(writer) if a.key not in self._planned]


class _Runner:
    """The `shipsure.plan.Writer` for restore steps."""

    def __init__(
        self,
        target: HttpRegistry,
        sources: Sequence[ContentSource],
        pusher: Pusher,
        manifests: Callable[[str, str], bytes | None] | None,
    ) -> None:
        self.target = target
        self.sources = sources
        self.pusher = pusher
        self.manifests = manifests
        self.steps: dict[str, Step] = {}
        self.moved: dict[str, int] = {}
        self.notes: dict[str, str] = {}

    def check(self, action: writes.Action) -> writes.Precondition:
        step = self.steps.get(action.key) or _step_of(action)
        if step is None:
            return writes.Refused("not a restore step this version understands")
        digest = Digest.parse(step.digest)
        if step.op in (UPLOAD_BLOB, MOUNT_BLOB):
            if not step.untrusted_head and self._blob_present(step, digest):
                return writes.AlreadyDone("the target serves it intact now")
            return writes.Ready()
        if step.op == PUT_MANIFEST and not step.untrusted_head and self._manifest_present(step):
            return writes.AlreadyDone("the target serves it intact now")
        if step.op == PUT_TAG and self._tag_points_to(step):
            return writes.AlreadyDone("the tag resolves to it now")
        return writes.Ready()

    def run(self, action: writes.Action) -> None:
        step = self.steps[action.key]
        digest = Digest.parse(step.digest)
        if step.op == MOUNT_BLOB:
            origin = step.source.removeprefix("repository:")
            if self.pusher.mount_blob(step.repository, digest, origin):
                self.notes[action.key] = f"mounted from {origin}"
                return
            self._upload(action.key, step, digest)
            self.notes[action.key] = "mount declined; uploaded"
            return
        if step.op == UPLOAD_BLOB:
            self._upload(action.key, step, digest)
            return
        raw = self.manifests(step.repository, step.digest) if self.manifests else None
        if raw is None or not digest.matches(raw):
            raise PushError("the plan's verified manifest bytes are missing")
        self.pusher.put_manifest(step.repository, step.reference, step.media_type, raw)
        self.moved[action.key] = len(raw)

    def _upload(self, key: str, step: Step, digest: Digest) -> None:
        fetched = fetch_blob(self.sources, step.repository, digest, step.size)
        if not isinstance(fetched, VerifiedBlob):
            why = "no source holds it"
            if isinstance(fetched, list):
                why = "; ".join(f"{r.source}: {r.reason}" for r in fetched)
            raise PushError(f"no verified copy: {why}")
        try:
            self.pusher.upload_blob(step.repository, digest, step.size, fetched.content)
        finally:
            fetched.close()
        self.moved[key] = step.size
        self.notes.setdefault(key, f"from {fetched.source}")

    def _blob_present(self, step: Step, digest: Digest) -> bool:
        """Planned as missing (a 404 then): present now means this or another run put it
        there. Read in full: a stale cache answers HEAD for data that is gone."""
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


def _step_of(action: writes.Action) -> Step | None:
    """The step an earlier run journaled (its facts), to re-check an intent it left open."""
    facts = action.facts
    try:
        return Step(
            op=str(facts["op"]),
            repository=str(facts["repository"]),
            digest=str(Digest.parse(str(facts["digest"]))),
            size=int(facts["size"]),
            media_type=str(facts["media_type"]),
            reference=str(facts["reference"]),
            source=str(facts["from"]),
            reason=str(facts.get("reason", "")),
        )
    except (KeyError, TypeError, ValueError, ShipsureError):
        return None
