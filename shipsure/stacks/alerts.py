"""Post drift transitions to a webhook: a Slack incoming webhook (`{"text": ...}`) or any
webhook (the transitions as JSON). One POST per run that has transitions; a timeout on
every attempt and a few retries on network errors, 429 and 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from shipsure.errors import BadInputError
from shipsure.stacks.discovery import display
from shipsure.stacks.drift import Transition

TIMEOUT_SECONDS = 10.0
ATTEMPTS = 3
BACKOFF_SECONDS = 2.0
MAX_RETRY_AFTER_SECONDS = 30.0
_ICONS = {"drifted": ":warning:", "resolved": ":white_check_mark:", "error": ":x:"}


class AlertFailed(Exception):
    pass


def check_url(url: str, what: str) -> None:
    """Refuse a webhook no POST can reach before any stack is planned, in one line that
    does not echo it (a webhook URL holds its credentials)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        raise BadInputError(f"{what}: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"{what}: expected an http:// or https:// URL with a host")


def webhook_kind(url: str, kind: str) -> str:
    """`slack` or `generic`; `auto` means Slack for hooks.slack.com URLs."""
    if kind != "auto":
        return kind
    host = urlsplit(url).hostname or ""
    return "slack" if host == "hooks.slack.com" else "generic"


def slack_text(transitions: Sequence[Transition], context: str) -> str:
    counts = {k: sum(t.kind == k for t in transitions) for k in ("drifted", "resolved", "error")}
    head = (
        f"shipsure drift{f' ({context})' if context else ''}: {counts['drifted']} newly "
        f"drifted, {counts['resolved']} resolved, {counts['error']} failing"
    )
    lines = [head]
    for t in transitions:
        was = f" (was {t.before})" if t.before else " (first check)"
        lines.append(f"{_ICONS[t.kind]} `{display(t.path)}` {t.kind}{was}")
    return "\n".join(lines)


def payload(kind: str, transitions: Sequence[Transition], context: str) -> dict[str, Any]:
    if kind == "slack":
        return {"text": slack_text(transitions, context)}
    return {
        "source": "shipsure",
        "event": "stacks-drift-transitions",
        "context": context,
        "transitions": [t.to_dict() for t in transitions],
    }


def post(
    url: str,
    body: dict[str, Any],
    *,
    transport: httpx.BaseTransport | None = None,
    attempts: int = ATTEMPTS,
    backoff: float | None = None,
) -> int:
    """POST `body` as JSON; the final HTTP status, or AlertFailed with the last reason."""
    backoff = BACKOFF_SECONDS if backoff is None else backoff
    reason = ""
    with httpx.Client(timeout=TIMEOUT_SECONDS, transport=transport) as client:
        for attempt in range(attempts):
            delay = backoff * (2**attempt)
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return response.status_code
                reason = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # the webhook refuses this payload; retrying will not help
                delay = max(delay, _retry_after(response))
            if attempt + 1 < attempts:
                time.sleep(delay)
    raise AlertFailed(reason)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", "0")), MAX_RETRY_AFTER_SECONDS)
    except ValueError:
        return 0.0
