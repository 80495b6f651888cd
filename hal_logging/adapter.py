"""The seed's context adapter, wired in this time.

``BenchmarkLoggerAdapter(logger, context)`` adds ``context`` to every record's
``extra=`` (the call's own ``extra`` wins on a clash). With
:class:`~hal_logging.JsonFormatter` context fields named like context columns
(``run_id``, ``RunID``, ``HAL_RUN_ID``) fill those columns; the rest go to
Properties. The old system built this adapter but never used it, so RunID and
TaskID stayed empty (docs/facts.md §4); :func:`get_context_logger` refuses to build
one without the fields the caller says it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from hal_logging.context import CONTEXT_ALIASES
from hal_logging.formatter import EXTRA_ATTR, RESERVED_ATTRS


def safe_extra(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` made safe for ``extra=``.

    The stdlib raises ``KeyError`` for an extra named like a LogRecord
    attribute (``name``, ``msg``, ``module``...), i.e. the log call itself
    raises. Such fields are carried under one private attribute instead, which
    JsonFormatter unpacks under their own names. Non-str keys become strings.
    """
    out: dict[str, Any] = {}
    clashing: dict[str, Any] = {}
    for key, value in fields.items():
        name = key if isinstance(key, str) else str(key)
        if name in RESERVED_ATTRS:
            clashing[name] = value
        else:
            out[name] = value
    if clashing:
        out[EXTRA_ATTR] = clashing
    return out


if TYPE_CHECKING:
    _AdapterBase = logging.LoggerAdapter[Any]
else:  # LoggerAdapter is subscriptable only from Python 3.11
    _AdapterBase = logging.LoggerAdapter


class BenchmarkLoggerAdapter(_AdapterBase):
    """A logger that adds a fixed context (run, task, agent...) to every record."""

    def __init__(
        self,
        logger: Any,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(logger, dict(context or {}))

    @property
    def context(self) -> Mapping[str, Any]:
        return self.extra or {}

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra")
        merged = dict(self.extra or {})
        if isinstance(extra, Mapping):
            merged.update(extra)
        elif extra is not None:
            merged["extra"] = extra
        kwargs["extra"] = safe_extra(merged)
        return msg, kwargs

    def bind(self, **fields: Any) -> BenchmarkLoggerAdapter:
        """A new adapter with ``fields`` added to this one's context."""
        return BenchmarkLoggerAdapter(self.logger, {**(self.extra or {}), **fields})


def _missing(context: Mapping[str, Any], required: Iterable[str]) -> list[str]:
    present = {k for k, v in context.items() if v is not None and v != ""}
    # run_id is satisfied by RunID or HAL_RUN_ID too: one name per column.
    present |= {CONTEXT_ALIASES[k] for k in present if k in CONTEXT_ALIASES}
    return [
        name
        for name in required
        if name not in present and CONTEXT_ALIASES.get(name, name) not in present
    ]


def get_context_logger(
    name: str | None,
    context: Mapping[str, Any],
    required_fields: Iterable[str] | None = None,
) -> BenchmarkLoggerAdapter:
    """``BenchmarkLoggerAdapter(logging.getLogger(name), context)``, checked.

    Raises ``ValueError`` naming every field of ``required_fields`` that is
    missing from ``context`` (absent, ``None`` or empty). A context column
    counts under any of its spellings (``run_id`` is satisfied by ``RunID``).
    """
    required = list(required_fields or ())
    missing = _missing(context, required)
    if missing:
        raise ValueError(
            f"get_context_logger({name!r}): missing required context field(s) "
            f"{', '.join(missing)}; pass them in context=..., e.g. "
            "context={'run_id': os.environ['HAL_RUN_ID'], ...}"
        )
    return BenchmarkLoggerAdapter(logging.getLogger(name), context)
