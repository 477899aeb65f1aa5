"""gc-check: what a collector run would delete, set against what every tag needs.

Findings (kinds from `shipsure.findings.KINDS`), each naming the repository and tag:
- `gc-breaks-tag` (error): the tag pulls today and the run deletes a manifest, blob or layer
  link its image needs; JSON `deletes` lists every one with its path from the tag.
- `gc-deletes-referrer` (warning): the run deletes a signature, SBOM or other referrer of
  the tag (or what it needs), while the image itself survives.
- `gc-deepens-damage` (warning): the tag is already broken and the run deletes content it
  still needs (a re-linkable child's blobs, say): repair before collecting.
- `gc-skips-lost-manifest` (warning): a manifest on the tag's tree has no data; the
  collector skips it when marking, so the blobs only it references are deleted.
- `gc-would-abort` (warning): the collector stops with this error; it deletes nothing (or,
  when the sweep fails, only what is listed).
- `check-error`: a path shipsure could not read.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from shipsure import findings
from shipsure.errors import CouldNotRunError
from shipsure.findings import CHECK_ERROR, Finding, Report
from shipsure.gc.collect import Prediction, predict
from shipsure.gc.reach import BLOB, MANIFEST, Need, Reachability, TagNeeds
from shipsure.gc.tree import GCTree
from shipsure.storage.interface import Storage


@dataclass
class CheckResult:
    prediction: Prediction
    report: Report


def _deleted(
    p: Prediction,
    repository: str,
    need: Need,
    manifests: set[tuple[str, str]],
    links: set[tuple[str, str]],
) -> str | None:
    """How the run removes `need`, or None when it survives."""
    if (need.data or need.digest) in p.blobs:
        return "data"
    if need.kind == MANIFEST and (repository, need.digest) in manifests:
        return "revision link"
    if need.kind == BLOB and (repository, need.digest) in links:
        return "layer link"
    return None


def _fork_prediction(
    storage: Storage, version: int, delete_untagged: bool
) -> tuple[Connection, BaseProcess]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_predict_child, args=(sender, storage, version, delete_untagged), daemon=True
    )
    child.start()
    sender.close()
    return receiver, child


def _predict_child(sender: Connection, storage: Storage, version: int, m: bool) -> None:
    gc.disable()
    try:
        tree = GCTree(storage)
        tree.raw_budget = 0
        got = predict(tree, version, m)
        got.marked_count = len(got.marked)
        got.marked = set()  # not needed by the parent; saves pickling it
        sender.send(got)
    except BaseException as exc:  # reported by the parent as "could not run"
        sender.send(f"{type(exc).__name__}: {exc}")
    finally:
        sender.close()


def _receive(receiver: Connection, child: BaseProcess) -> Prediction:
    try:
        got = receiver.recv()
    except EOFError:
        got = "the collector replay process died"
    finally:
        receiver.close()
        child.join()
    if isinstance(got, str):
        raise CouldNotRunError(f"gc-check: {got}")
    assert isinstance(got, Prediction)
    return got


def check(
    storage: Storage, version: int, delete_untagged: bool, *, parallel: bool = True
) -> CheckResult:
    """Predict the run and judge it tag by tag. Raises StorageError only when the root
    itself cannot be read."""
    from shipsure.storage.inventory import ReadProblem, check_registry_root, discover_repositories

    check_registry_root(storage)
    tree = GCTree(storage)
    reach = Reachability(tree)

    problems: list[ReadProblem] = []
    repositories = discover_repositories(storage, problems)
    tags: Iterable[TagNeeds]
    # Fork only from a single-threaded process: a lock another thread holds would stay held
    # in the child for ever.
    can_fork = storage.can_fork_workers and threading.active_count() == 1
    if parallel and can_fork and (os.cpu_count() or 1) > 1:
        # The collector's replay and the tags' walk are independent until they are set
        # against each other: replay in a forked process while this one walks the tags.
        receiver, child = _fork_prediction(storage, version, delete_untagged)
        tags = list(reach.iter_tags(repositories))
        prediction = _receive(receiver, child)
    else:
        prediction = predict(tree, version, delete_untagged)
        tags = reach.iter_tags(repositories)
    report = Report("gc-check")
    flags = "--delete-untagged" if delete_untagged else "(without --delete-untagged)"
    report.meta["gc"] = {
        "registry_version": version,
        "delete_untagged": delete_untagged,
        "aborted": prediction.aborted,
        "unknown": prediction.unknown,
    }
    report.meta["would_delete"] = would_delete(prediction, tree)
    report.checked.update({"repositories": len(repositories), "marked": prediction.marked_count})
    if prediction.unknown:
        report.add(
            Finding(
                CHECK_ERROR,
                findings.kind(CHECK_ERROR).severity,
                f"could not replay garbage-collect {flags}: {prediction.unknown}; the collector "
                "reads through it, so what the run would delete is unknown",
                details={"storage_path": prediction.unknown_path},
            )
        )
    if prediction.aborted:
        report.add(
            Finding(
                "gc-would-abort",
                findings.kind("gc-would-abort").severity,
                f"garbage-collect {flags} of distribution {version}.x would stop: "
                f"{prediction.aborted}",
                details={"error": prediction.aborted, "storage_path": prediction.abort_path},
            )
        )
    manifests = prediction.manifest_keys
    links = set(prediction.layer_links)
    count = 0
    for t in tags:
        count += 1
        _judge(report, prediction, t, manifests, links)
    report.checked["tags"] = count
    for path, message in [(p.path, p.message) for p in problems] + reach.problems:
        report.add(
            Finding(
                CHECK_ERROR,
                findings.kind(CHECK_ERROR).severity,
                message,
                details={"storage_path": path},
            )
        )
    return CheckResult(prediction, report)


def _judge(
    report: Report,
    p: Prediction,
    t: TagNeeds,
    manifests: set[tuple[str, str]],
    links: set[tuple[str, str]],
) -> None:
    reference = f"{t.repository}:{t.tag}"
    # Each deletion as {kind, digest, removes}; the finding's `path` shows the way from the
    # tag to the first one (paths of all of them would dominate a large registry's report).
    image: list[tuple[Need, str]] = []
    referrers: list[tuple[Need, str]] = []
    for need in t.needs:
        if not need.present:
            continue
        how = _deleted(p, t.repository, need, manifests, links)
        if how is not None:
            (referrers if need.referrer else image).append((need, how))
    if image:
        kind = "gc-breaks-tag" if t.intact else "gc-deepens-damage"
        verb = "breaks" if t.intact else "deepens the damage of"
        report.add(
            Finding(
                kind,
                findings.kind(kind).severity,
                f"garbage-collect {verb} {reference}: it deletes {_summary(image)} the image needs",
                repository=t.repository,
                reference=t.tag,
                digest=image[0][0].digest,
                path=image[0][0].path,
                details={"deletes": _listing(image)},
            )
        )
    if referrers:
        report.add(
            Finding(
                "gc-deletes-referrer",
                findings.kind("gc-deletes-referrer").severity,
                f"garbage-collect deletes {_summary(referrers)} of {reference}'s referrers "
                "(signatures, SBOMs, attestations)",
                repository=t.repository,
                reference=t.tag,
                digest=referrers[0][0].digest,
                path=referrers[0][0].path,
                details={"deletes": _listing(referrers)},
            )
        )
    for need in t.unknown:
        if need.present or need.referrer:
            continue
        if (t.repository, need.digest) not in p.skipped:
            continue
        report.add(
            Finding(
                "gc-skips-lost-manifest",
                findings.kind("gc-skips-lost-manifest").severity,
                f"{reference}: manifest {need.digest} has no data; garbage-collect skips it "
                "when marking, so blobs only it references are deleted: restore it first",
                repository=t.repository,
                reference=t.tag,
                digest=need.digest,
                path=need.path,
            )
        )


def _listing(deletes: list[tuple[Need, str]]) -> list[dict[str, str]]:
    return [{"kind": n.kind, "digest": n.digest, "removes": how} for n, how in deletes]


def _summary(deletes: list[tuple[Need, str]]) -> str:
    manifests = sum(1 for n, _ in deletes if n.kind == MANIFEST)
    blobs = len(deletes) - manifests
    parts = []
    if manifests:
        parts.append(f"{manifests} manifest(s)")
    if blobs:
        parts.append(f"{blobs} blob(s)")
    return " and ".join(parts)


def would_delete(p: Prediction, tree: GCTree) -> dict[str, Any]:
    return {
        "manifests": [
            {"repository": m.repository, "digest": m.digest}
            for m in sorted(p.manifests, key=lambda m: (m.repository, m.digest))
        ],
        "blobs": sorted(p.blobs),
        "layer_links": [{"repository": r, "digest": d} for r, d in sorted(set(p.layer_links))],
        "bytes": sum(tree.size(d) for d in p.blobs),
    }
