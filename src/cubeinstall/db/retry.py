"""Retry a connection attempt with backoff until a deadline.

Used by the MySQL connection and the Redis gate: a server that is still
starting (refused, timed out, loading) gets more attempts; anything else
(bad password, unknown host) fails at once because waiting cannot fix it.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0
MAX_ATTEMPT_TIMEOUT = 10.0


def until_deadline(attempt: Callable[[float], T], *, deadline_seconds: float,
                   transient: Callable[[BaseException], bool]) -> T:
    """Call ``attempt(timeout)`` until it returns; re-raise a non-transient error at once.

    ``timeout`` is how long one attempt may block (never past the deadline).
    When the deadline passes, the last transient error is re-raised.
    """
    deadline = time.monotonic() + deadline_seconds
    delay = FIRST_DELAY
    while True:
        remaining = deadline - time.monotonic()
        try:
            return attempt(max(0.5, min(MAX_ATTEMPT_TIMEOUT, remaining)))
        except Exception as exc:  # noqa: BLE001 - classified right here
            if not transient(exc) or time.monotonic() + delay >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
