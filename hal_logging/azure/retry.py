"""Which answers are worth another try, and how long to wait between tries.

The policy in one place:

- **Retry** 408, 429, 500, 502, 503, 504, connection errors and timeouts, with
  exponential backoff and full jitter, honouring the service's ``Retry-After``
  (read by :mod:`hal_logging.azure.transport`), until the deadline. azure-core's
  own retry policy is switched off (``retry_total=0``) so the two never multiply.
- **Split** on 400 and 413, and on any other 4xx not listed here: the batch is
  halved until the refused rows are alone (they go to the dead letter).
- **Stop** on 401, 403 and 404: retrying cannot fix them
  (:mod:`hal_logging.azure.messages` says what can).

A deadline is re-read between tries: the forwarder sets one only when its
final drain starts, so an outage while reading is waited out.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "FATAL_STATUS",
    "RETRY_STATUS",
    "SPLIT_STATUS",
    "Cancelled",
    "Deadline",
    "backoff",
    "deadline_fn",
    "should_split",
    "wait",
]

RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
SPLIT_STATUS: Final = frozenset({400, 413})
FATAL_STATUS: Final = frozenset({401, 403, 404})

#: A ``time.monotonic()`` value to give up by, a function giving it (re-read
#: between tries), or None: no deadline.
Deadline = float | Callable[[], float | None] | None


class Cancelled(Exception):
    """Another request of the same send failed for good: this one stops too."""


def should_split(status: int | None) -> bool:
    """Does this answer refuse some rows of the request (so halving finds them)?"""
    return status in SPLIT_STATUS or (
        status is not None and 400 <= status < 500 and status not in RETRY_STATUS | FATAL_STATUS
    )


def backoff(attempt: int, base: float, most: float) -> float:
    """Seconds before try ``attempt + 1``: exponential, capped, jittered over the upper half."""
    cap = min(most, base * (2**attempt))
    return random.uniform(cap / 2, cap)


def deadline_fn(deadline: Deadline, retry_timeout: float | None) -> Callable[[], float | None]:
    """``deadline`` as a function; no deadline and a ``retry_timeout`` give one from now."""
    if callable(deadline):
        return deadline
    if deadline is None and retry_timeout is not None:
        deadline = time.monotonic() + retry_timeout
    fixed = deadline
    return lambda: fixed


def wait(delay: float, deadline: Callable[[], float | None], cancel: threading.Event) -> bool:
    """Sleep ``delay`` unless the deadline comes first (False) — re-reading the deadline.

    Raises :class:`Cancelled` when ``cancel`` is set meanwhile.
    """
    wake = time.monotonic() + max(0.0, delay)
    while True:
        now = time.monotonic()
        end = deadline()
        if end is not None and now >= end:
            return False
        if end is not None and wake > end:
            return False  # the wait alone would pass the deadline: give up now
        if now >= wake:
            return True
        if cancel.wait(min(wake - now, 0.25)):
            raise Cancelled()
