"""Bounded retries with exponential backoff and jitter, honouring `Retry-After`.

Only idempotent requests (GET, HEAD) are retried, and only for answers that say "try again":
connection failures, timeouts, 429 and 502/503/504. A plain 500 is not retried: a registry
answers it for storage errors that a second ask does not cure.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class TransientError(Exception):
    """Internal: a failure worth another attempt (never leaves the registry package)."""


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` extra attempts after the first; delays grow from `base_delay` to `max_delay`.

    `sleep` is the clock's sleep; tests pass one that records the delays instead.
    """

    retries: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    retry_after_cap: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry_number` (1-based)."""
        if retry_after is not None:
            # The server knows best when it will have capacity again, up to our patience.
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        # "Equal jitter": at least half the backoff, so retries from many threads spread
        # out without any of them hammering straight back.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """RFC 9110 `Retry-After`: delay-seconds or an HTTP-date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also takes "²" and "١"
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
