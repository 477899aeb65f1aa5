"""Read a registry's push notifications: distribution's envelope and Harbor's webhook. Pure.

distribution (2.8 and 3.x, `notifications.endpoints` in its config) POSTs an envelope
`{"events": [...]}` with `Content-Type: application/vnd.docker.distribution.events.v1+json`
(v3.1.2 says `...events.v2+json` for the same shape).
Each event has an `action` (push, pull, mount, delete) and a `target` with `mediaType`,
`digest`, `repository`, `url` and, for a manifest pushed by tag, `tag` (distribution
`notifications/event.go`). Blob uploads are push events too; only manifest pushes matter.

Harbor (v2) POSTs `{"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"digest",
"tag"}], "repository": {"repo_full_name"}}}` (Harbor `pkg/notifier/model`): no media type,
sent once the artifact is complete.

A request is taken whole or refused whole (`NotificationError` with an HTTP status and a
message naming the field): a malformed event or an action nobody documents changes
nothing. Every action distribution documents is accepted (those that need no check, such as
pull and delete, are ignored): distribution retries a refused envelope without end, and
every later event waits behind it (observed on 2.8.2 and v3.1.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipsure import mediatypes as mt
from shipsure.errors import ShipsureError
from shipsure.model import Reference

DISTRIBUTION_ENVELOPE = "application/vnd.docker.distribution.events.v1+json"
# distribution v3 sends the same envelope as `...events.v2+json` (observed on v3.1.2).
DISTRIBUTION_ENVELOPE_V2 = "application/vnd.docker.distribution.events.v2+json"
ENVELOPE_TYPES = frozenset({DISTRIBUTION_ENVELOPE, DISTRIBUTION_ENVELOPE_V2})

# distribution notifications/event.go: EventActionPull, Push, Mount, Delete.
DISTRIBUTION_ACTIONS = frozenset({"push", "pull", "mount", "delete"})
# Harbor pkg/notifier/event/topics.go (the webhook's `type`).
HARBOR_PUSH = "PUSH_ARTIFACT"
HARBOR_TYPES = frozenset(
    {
        HARBOR_PUSH,
        "PULL_ARTIFACT",
        "DELETE_ARTIFACT",
        "UPLOAD_CHART",
        "DOWNLOAD_CHART",
        "DELETE_CHART",
        "SCANNING_COMPLETED",
        "SCANNING_FAILED",
        "SCANNING_STOPPED",
        "QUOTA_EXCEED",
        "QUOTA_WARNING",
        "REPLICATION",
        "TAG_RETENTION",
    }
)
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
# The most events one request may carry (distribution sends one envelope per event).
MAX_EVENTS = 1000

# What a push is, for scheduling (the index waits for its children; see pushqueue.py).
KIND_INDEX = "index"
KIND_IMAGE = "image"
KIND_UNKNOWN = "unknown"  # Harbor says no media type; the walk finds out


class NotificationError(ShipsureError):
    """A notification refused whole; `status` is the HTTP answer (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PushEvent:
    """A manifest pushed to `repository` with `digest`, by `tag` or by digest (tag None)."""

    repository: str
    digest: str
    tag: str | None
    kind: str  # KIND_INDEX, KIND_IMAGE or KIND_UNKNOWN
    media_type: str | None
    source: str  # "distribution" or "harbor"


@dataclass(frozen=True)
class Notification:
    """What one request said: the pushes to verify and how many events needed nothing."""

    pushes: tuple[PushEvent, ...]
    ignored: int
    source: str


def parse_notification(content_type: str | None, body: bytes) -> Notification:
    """Parse one POSTed body; raises NotificationError (400, 415, 422) naming what is wrong."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in ENVELOPE_TYPES and media_type != "application/json":
        raise NotificationError(
            415,
            f"Content-Type {media_type or '(none)'!r} is not distribution's envelope "
            f"({DISTRIBUTION_ENVELOPE}, or v2 from distribution v3) nor application/json "
            "(Harbor)",
        )
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise NotificationError(400, f"body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise NotificationError(400, "body is not a JSON object")
    if "events" in doc:
        return _distribution(doc["events"])
    if "type" in doc and "event_data" in doc:
        return _harbor(doc)
    raise NotificationError(
        422,
        "not a notification shipsure knows: neither distribution's envelope "
        "({'events': [...]}) nor Harbor's webhook ({'type', 'event_data'})",
    )


def _distribution(events: Any) -> Notification:
    if not isinstance(events, list):
        raise NotificationError(400, "events: not a list")
    if len(events) > MAX_EVENTS:
        raise NotificationError(413, f"events: {len(events)} events, at most {MAX_EVENTS}")
    pushes: list[PushEvent] = []
    ignored = 0
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            raise NotificationError(400, f"{where}: not an object")
        action = event.get("action")
        if action not in DISTRIBUTION_ACTIONS:
            raise NotificationError(
                422,
                f"{where}.action: unknown event kind {str(action)[:64]!r} (distribution "
                f"sends {', '.join(sorted(DISTRIBUTION_ACTIONS))})",
            )
        target = event.get("target")
        if not isinstance(target, dict):
            raise NotificationError(400, f"{where}.target: not an object")
        media_type = _optional_text(target, "mediaType", where)
        url = _optional_text(target, "url", where) or ""
        is_manifest = (
            media_type in mt.MANIFESTS or media_type in SCHEMA1_TYPES or "/manifests/" in url
        )
        repository = _text(target, "repository", where)
        digest = _text(target, "digest", where)
        tag = _optional_text(target, "tag", where) or None
        _check_names(repository, digest, tag, where)
        if action != "push" or not is_manifest:
            ignored += 1  # pulls, mounts, deletes, blob uploads: nothing to verify
            continue
        kind = KIND_INDEX if media_type in mt.INDEXES else KIND_IMAGE
        pushes.append(PushEvent(repository, digest, tag, kind, media_type, "distribution"))
    return Notification(tuple(pushes), ignored, "distribution")


def _harbor(doc: Mapping[str, Any]) -> Notification:
    kind = doc.get("type")
    if kind not in HARBOR_TYPES:
        raise NotificationError(422, f"type: unknown event kind {str(kind)[:64]!r} (Harbor)")
    if kind != HARBOR_PUSH:
        return Notification((), 1, "harbor")
    data = doc.get("event_data")
    if not isinstance(data, dict):
        raise NotificationError(400, "event_data: not an object")
    repo = data.get("repository")
    if not isinstance(repo, dict):
        raise NotificationError(400, "event_data.repository: not an object")
    repository = _text(repo, "repo_full_name", "event_data.repository")
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise NotificationError(400, "event_data.resources: not a non-empty list")
    if len(resources) > MAX_EVENTS:
        raise NotificationError(413, f"event_data.resources: more than {MAX_EVENTS}")
    pushes = []
    for i, resource in enumerate(resources):
        where = f"event_data.resources[{i}]"
        if not isinstance(resource, dict):
            raise NotificationError(400, f"{where}: not an object")
        digest = _text(resource, "digest", where)
        tag = _optional_text(resource, "tag", where) or None
        _check_names(repository, digest, tag, where)
        pushes.append(PushEvent(repository, digest, tag, KIND_UNKNOWN, None, "harbor"))
    return Notification(tuple(pushes), 0, "harbor")


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise NotificationError(400, f"{where}.{key}: missing or not a string")
    return value


def _optional_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise NotificationError(400, f"{where}.{key}: not a string")
    return value


def _check_names(repository: str, digest: str, tag: str | None, where: str) -> None:
    """Names must be what distribution itself accepts (its reference grammar)."""
    text = f"registry.invalid/{repository}{':' + tag if tag else ''}@{digest}"
    try:
        Reference.parse(text)
    except ShipsureError:
        shown = f"{repository[:100]}{':' + tag[:64] if tag else ''}@{digest[:80]}"
        raise NotificationError(
            400, f"{where}: {shown!r} is not a valid repository, tag and digest"
        ) from None
    if len(repository) > 255:
        raise NotificationError(400, f"{where}.repository: longer than 255 characters")


def describe(pushes: Sequence[PushEvent]) -> str:
    """A short log line of what was pushed."""
    return ", ".join(f"{p.repository}:{p.tag or p.digest[:19]}" for p in pushes[:5]) + (
        f" (+{len(pushes) - 5})" if len(pushes) > 5 else ""
    )
