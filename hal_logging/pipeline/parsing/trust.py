"""The trust rule (CONTRACT §3): the VM side's context wins over the container's.

The container runs an AI agent, so whatever it writes in a context column is a
claim. For every column the VM side knows (``trusted``: only non-empty values),
the row gets the trusted value, and a *differing, non-empty* claim is kept
under ``Properties.hal.claimed[column]`` so nothing is hidden. ``LogType`` is
always trusted: the parser's ``log_type`` (``AgentLog``) unless the trusted
context sets it, so a container cannot pass its lines off as VM operations.

Columns the VM side does not know keep the container's value. A container's
own ``Properties.hal`` is pipeline metadata it may not write: it is moved to
``Properties.hal.claimed["hal"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hal_logging import schema

_CONTEXT = frozenset(c.name for c in schema.CONTEXT_COLUMNS)


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
