"""Plan retention by tag, so that no kept tag, index or referrer loses anything. Pure.

Input: every tag as a `TagImage` (what its tree holds: manifests, including children of
indexes and referrers, and blobs with sizes). Decisions, per repository:
1. the first policy matching the repository decides its ordinary tags (no policy: keep all);
2. a referrers fallback tag (`sha256-<hex>`, cosign's `.sig/.att`) is kept exactly when its
   subject is in a kept tag's tree;
3. a deleted tag whose manifest a kept tag's tree still holds (the same digest under another
   tag, a child of a kept index, a referrer's subject) loses the tag only; otherwise its
   manifest is deleted (over the API; on storage only tag folders are removed and `shipsure
   gc` collects the rest).

Actions (`shipsure.plan.Action`): `delete-tag` (target `repo:tag`) and `delete-manifest`
(target `repo@digest`, facts list the tags it takes with it). `bytes` is what the deleted
trees hold that no kept tree shares: what a collection afterwards frees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shipsure.plan import Action, Plan
from shipsure.retention.config import policy_for
from shipsure.retention.policy import Policy, TagInfo, referrer_subject

WRITER = "retain"
DELETE_TAG = "delete-tag"
DELETE_MANIFEST = "delete-manifest"


@dataclass(frozen=True)
class TagImage:
    repository: str
    tag: str
    digest: str
    created: float | None
    manifests: frozenset[str] = frozenset()  # the tag's tree, its own digest included
    blobs: Mapping[str, int] = field(default_factory=dict)  # digest -> size
    # A throw-away image an interrupted tag deletion left on the tag: always deleted.
    leftover: bool = False


@dataclass(frozen=True)
class Decision:
    repository: str
    tag: str
    digest: str
    keep: bool
    why: str


@dataclass
class RetentionPlan:
    decisions: list[Decision]
    plan: Plan
    bytes: int


def plan_retention(
    images: Sequence[TagImage],
    policies: list[Policy],
    now: float,
    *,
    delete_manifests: bool,
) -> RetentionPlan:
    """`delete_manifests`: plan `delete-manifest` where allowed (over the API); else every
    deletion is a `delete-tag` (on storage)."""
    by_repo: dict[str, list[TagImage]] = {}
    for image in images:
        by_repo.setdefault(image.repository, []).append(image)
    decisions: list[Decision] = []
    actions: list[Action] = []
    kept_all: list[TagImage] = []
    gone_all: list[TagImage] = []
    for repository in sorted(by_repo):
        tags = sorted(by_repo[repository], key=lambda i: i.tag)
        policy = policy_for(policies, repository)
        ordinary = [t for t in tags if referrer_subject(t.tag) is None]
        if policy is None:
            keep = {t.tag for t in ordinary}
            why_keep, why_drop = "no policy matches the repository", ""
        else:
            infos = [TagInfo(t.tag, t.created) for t in ordinary]
            keep = policy.decide(infos, now)
            why_keep, why_drop = "kept by the policy", "not kept by the policy"
        kept_manifests: set[str] = set()
        for t in ordinary:
            if t.tag in keep and not t.leftover:
                kept_manifests |= t.manifests
        for t in tags:
            subject = referrer_subject(t.tag)
            if subject is not None:
                k = subject in kept_manifests
                why = "its subject is kept" if k else "its subject is not kept"
                if k:
                    kept_manifests |= t.manifests
            elif t.leftover:
                k, why = False, "a throw-away image an interrupted tag deletion left"
            else:
                k = t.tag in keep
                why = why_keep if k else why_drop
            decisions.append(Decision(repository, t.tag, t.digest, k, why))
            (kept_all if k else gone_all).append(t)
        gone = [t for t in tags if not _kept(decisions, repository, t.tag)]
        actions.extend(_actions(repository, gone, kept_manifests, delete_manifests))
    kept_blobs: set[str] = set()
    kept_trees: set[str] = set()
    for t in kept_all:
        kept_blobs.update(t.blobs)
        kept_trees |= t.manifests
    freed: dict[str, int] = {}
    for t in gone_all:
        for digest, size in t.blobs.items():
            if digest not in kept_blobs:
                freed[digest] = size
    return RetentionPlan(decisions, Plan(WRITER, actions), sum(freed.values()))


def _kept(decisions: list[Decision], repository: str, tag: str) -> bool:
    for d in reversed(decisions):
        if d.repository == repository and d.tag == tag:
            return d.keep
    return True


def _actions(
    repository: str, gone: list[TagImage], kept_manifests: set[str], delete_manifests: bool
) -> list[Action]:
    out: list[Action] = []
    by_digest: dict[str, list[str]] = {}
    for t in gone:
        if delete_manifests and t.digest not in kept_manifests:
            by_digest.setdefault(t.digest, []).append(t.tag)
            continue
        why = (
            "a kept tag, index or referrer still needs its manifest"
            if t.digest in kept_manifests
            else "not kept by the policy"
        )
        out.append(
            Action(
                DELETE_TAG,
                f"{repository}:{t.tag}",
                why,
                {"repository": repository, "tag": t.tag, "digest": t.digest},
            )
        )
    for digest, tags in sorted(by_digest.items()):
        out.append(
            Action(
                DELETE_MANIFEST,
                f"{repository}@{digest}",
                "no kept tag needs it",
                {"repository": repository, "digest": digest, "tags": sorted(tags)},
            )
        )
    return out
