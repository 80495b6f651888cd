"""The trust rule (docs/contract.md §3): the VM side's context wins over the container's.

The container runs an AI agent, so whatever it writes in a context column is a
claim. For every column the VM side knows (``trusted``: only non-empty values),
the row gets the trusted value, and a *differing, non-empty* claim is kept
under ``Properties.hal.claimed[column]`` so nothing is hidden. ``LogType`` is
always trusted: the parser's ``log_type`` (``AgentLog``) unless the trusted
context sets it, so a container cannot pass its lines off as VM operations.

Columns the VM side does not know keep the container's value. A container's
own ``Properties.hal`` is pipeline metadata it may not write: it is moved to
``Properties.hal.claimed["hal"]``.

The VM side's own rows cannot be faked either. Logger names ``hal_logging``
and ``hal_logging.*`` are the forwarder's (its "command finished" row, the
budget notice...): a container's row claiming one keeps the claim under
``claimed["LoggerName"]`` and is stored as ``container:<name>``
(:func:`demote_reserved_logger`), so a query for the forwarder's rows never
matches it. (``LogType`` ``VMOperation`` is covered by the rule above.) And
where the lifetime of the writer is known (a wrapped command), a wire line's
time outside it, widened by :data:`CLAIM_SKEW` seconds, is a claim too: kept as
``claimed["TimeGenerated"]`` and replaced by the time the line was read (the
parser's ``not_before``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hal_logging import schema

_CONTEXT = frozenset(c.name for c in schema.CONTEXT_COLUMNS)

#: The VM side's logger names: this one and its children.
RESERVED_LOGGER = "hal_logging"
#: What a container's claim to a reserved logger name is stored under.
CLAIMED_LOGGER_PREFIX = "container:"
#: Seconds a wire line's time may lie before its command started (or after it
#: was read) before it is treated as a claim: clocks of one machine, a little slack.
CLAIM_SKEW = 2.0


def is_reserved_logger(name: str) -> bool:
    """True for ``hal_logging`` and ``hal_logging.*`` (not ``hal_logging_x``)."""
    return name.startswith(RESERVED_LOGGER) and (
        len(name) == len(RESERVED_LOGGER) or name[len(RESERVED_LOGGER)] == "."
    )


def demote_reserved_logger(row: dict[str, Any], hal: dict[str, Any]) -> None:
    """A container row under a VM-side logger name: keep the claim, rename the row."""
    name = row.get("LoggerName")
    if type(name) is str and is_reserved_logger(name):
        hal.setdefault(schema.HAL_CLAIMED, {})["LoggerName"] = name
        row["LoggerName"] = CLAIMED_LOGGER_PREFIX + name


def trusted_items(trusted: Mapping[str, str], log_type: str) -> tuple[tuple[str, str], ...]:
    """The (column, value) pairs to enforce, validated once per parser."""
    out: dict[str, str] = {"LogType": log_type}
    for col, value in trusted.items():
        if col not in _CONTEXT:
            raise ValueError(
                f"trusted context has unknown column {col!r}; "
                f"expected one of {', '.join(sorted(_CONTEXT))}"
            )
        if value:
            out[col] = str(value)
    return tuple(out.items())


def apply_trust(
    row: dict[str, Any], items: tuple[tuple[str, str], ...], hal: dict[str, Any]
) -> None:
    """Enforce the trusted values on ``row``; differing claims go to ``hal['claimed']``."""
    for col, value in items:
        claim = row[col]
        if claim != value:
            if claim:
                hal.setdefault(schema.HAL_CLAIMED, {})[col] = claim
            row[col] = value
