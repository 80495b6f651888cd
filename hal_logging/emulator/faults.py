"""What the stand-in does wrong, and when: a small, thread-safe fault plan.

Real outages are bursts, retries meet a different answer each time, and a test
must be able to reproduce exactly the sequence that broke something. So a plan
has three layers, consulted in this order for every ingestion request:

1. ``script``: a queue of fault kinds forced on the next requests, one each
   (``"ok"`` lets one through) — deterministic sequences for tests;
2. ``down``: a kind applied to every request while set (an outage, e.g. ``"503"``
   or ``"cut"``) — scripted outages and recoveries;
3. ``rates``: kind -> probability per request, drawn from a seeded RNG.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: Fault kinds and what the stand-in does for each.
FAULT_KINDS: Final[dict[str, str]] = {
    "429": "429 Too Many Requests with a Retry-After header; rows not stored",
    "429-no-retry-after": "429 without Retry-After; rows not stored",
    "408": "408 Request Timeout; rows not stored",
    "500": "500 Internal Server Error; rows not stored",
    "502": "502 Bad Gateway; rows not stored",
    "503": "503 Service Unavailable (with Retry-After); rows not stored",
    "504": "504 Gateway Timeout; rows not stored",
    "401": "401 InvalidToken, as for a token Azure does not accept",
    "403": "403 OperationFailed, as when the identity lacks the role",
    "404": "404 NotFound, as for a wrong rule id or stream",
    "slow": "answer after `slow_seconds`; rows stored when the answer is written",
    "cut": "close the connection before answering; rows not stored",
    "stored-500": "store the rows, then answer 500 (a retry duplicates them)",
    "stored-cut": "store the rows, then close the connection (a retry duplicates them)",
}
#: Kinds answered with a plain error status before anything is stored.
ERROR_STATUS: Final[dict[str, int]] = {
    "429": 429,
    "429-no-retry-after": 429,
    "408": 408,
    "500": 500,
    "502": 502,
    "503": 503,
    "504": 504,
    "401": 401,
    "403": 403,
    "404": 404,
}
#: Kinds that end a run with a message, not a retry (the identity, rule or stream is wrong).
FATAL_KINDS: Final[frozenset[str]] = frozenset({"401", "403", "404"})
#: Kinds a client must ride out by retrying: every kind but the fatal ones.
TRANSIENT_KINDS: Final[tuple[str, ...]] = tuple(k for k in FAULT_KINDS if k not in FATAL_KINDS)
OK: Final = "ok"


def parse_fault(spec: str) -> tuple[str, float]:
    """``"429=0.1"`` -> ``("429", 0.1)``; a bare kind means rate 1.0."""
    kind, _, rate_text = spec.partition("=")
    kind = kind.strip()
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    try:
        rate = float(rate_text) if rate_text else 1.0
    except ValueError:
        raise ValueError(f"fault rate must be a number between 0 and 1: {spec!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault rate must be between 0 and 1: {spec!r}")
    return kind, rate


def _check_kind(kind: str) -> str:
    if kind != OK and kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: ok, {', '.join(FAULT_KINDS)}")
    return kind


@dataclass
class FaultPlan:
    """The faults to inject; safe to change from any thread while serving."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    retry_after: float = 1.0
    slow_seconds: float = 2.0
    down: str | None = None
    script: deque[str] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.script = deque(
            _check_kind(str(k)) for k in self.script
        )  # a list given here must still popleft()
        for kind, rate in self.rates.items():
            _check_kind(kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate must be between 0 and 1: {kind}={rate}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def choose(self) -> str | None:
        """The fault for the next request, or ``None`` to behave."""
        with self._lock:
            if self.script:
                kind = self.script.popleft()
                return None if kind == OK else kind
            if self.down:
                return self.down
            if not self.rates:
                return None
            draw = self._rng.random()
            total = 0.0
            for kind in sorted(self.rates):
                total += self.rates[kind]
                if draw < total:
                    return kind
            return None

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a change sent to ``POST /_emulator/faults`` (keys as the fields).

        ``rates`` replaces the rates; ``script`` is appended to the queue
        (``clear_script`` empties it first); ``down`` may be ``None`` to end
        an outage; ``seed`` reseeds the RNG.
        """
        with self._lock:
            if "rates" in changes:
                rates = {str(k): float(v) for k, v in dict(changes["rates"] or {}).items()}
                for kind, rate in rates.items():
                    _check_kind(kind)
                    if not 0.0 <= rate <= 1.0:
                        raise ValueError(f"fault rate must be between 0 and 1: {kind}={rate}")
                if sum(rates.values()) > 1.0 + 1e-9:
                    raise ValueError("fault rates add up to more than 1")
                self.rates = rates
            if changes.get("clear_script"):
                self.script.clear()
            if "script" in changes:
                self.script.extend(_check_kind(str(k)) for k in _as_list(changes["script"]))
            if "down" in changes:
                down = changes["down"]
                self.down = None if down in (None, "", False) else _check_kind(str(down))
            if "seed" in changes:
                self.seed = None if changes["seed"] is None else int(changes["seed"])
                self._rng = random.Random(self.seed)
            if "retry_after" in changes:
                self.retry_after = float(changes["retry_after"])
            if "slow_seconds" in changes:
                self.slow_seconds = float(changes["slow_seconds"])

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rates": dict(self.rates),
                "seed": self.seed,
                "retry_after": self.retry_after,
                "slow_seconds": self.slow_seconds,
                "down": self.down,
                "script": list(self.script),
            }


def _as_list(value: Any) -> Iterable[Any]:
    if isinstance(value, (list, tuple)):
        return value
    return [value]
