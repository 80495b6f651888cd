"""Folding of identical repeated lines: ``keep the first, then say how many more``.

Within one source stream, a row equal to the previous one (same LoggerName,
Level, Message, context columns and Properties apart from ``hal``) is held back
and counted instead of shipped. When the run ends (a different row arrives in
that stream, or the chain is flushed: at the end of input and periodically) one
summary row goes out: a copy of the last folded row whose Message starts with
``[repeated N more times]`` (the repeated text is cut to 1 KB there: the first
occurrence already carries it whole) and whose ``Properties.hal.repeated`` is
N, with ``hal.repeated_since`` the time of the first folded row. A count over
a message is therefore ``count() + sum(Properties.hal.repeated)``.

Rows that differ in their Properties are never folded: a structured line such
as ``step done`` with ``step=1, 2, 3`` keeps every row.

Checkpoints: a folded row produces nothing when it arrives (the runner sees it
as dropped), and the summary row carries the span and record id of the last
folded row, so re-reading the same bytes after a crash yields the same ids.
:meth:`FoldFilter.held_starts` tells a runner that wants to keep the summary
across a crash where the oldest held row starts, per stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import PROP_HAL, STRING_COLUMNS, truncate_utf8

#: How much of the repeated message the summary row repeats.
SUMMARY_TEXT_BYTES = 1024
HAL_REPEATED = "repeated"
HAL_REPEATED_SINCE = "repeated_since"


def _signature(row: dict[str, Any]) -> tuple[tuple[Any, ...], Any]:
    cols = tuple(row.get(c) for c in STRING_COLUMNS)
    props = row.get("Properties")
    if isinstance(props, dict) and PROP_HAL in props:
        props = {k: v for k, v in props.items() if k != PROP_HAL}
    return cols, props


@dataclass
class _Run:
    signature: tuple[tuple[Any, ...], Any]
    held: int = 0
    first: Record | None = None  # first held record
    last: Record | None = None  # last held record


class FoldFilter(Filter):
    """Stats: ``folded`` (rows held and counted), ``summaries`` (summary rows added)."""

    name = "fold"

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[tuple[str, str], _Run] = {}

    def process(self, record: Record) -> Iterable[Record]:
        key = (record.source, record.stream)
        signature = _signature(record.row)
        run = self._runs.get(key)
        if run is not None and run.signature == signature:
            if run.first is None:
                run.first = record
            run.last = record
            run.held += 1
            self.count("folded")
            return ()
        self._runs[key] = _Run(signature)
        if run is not None and run.held:
            return (self._summary(run), record)
        return (record,)

    def flush(self) -> Iterable[Record]:
        out = []
        for run in self._runs.values():
            if run.held:
                out.append(self._summary(run))
        return out

    def held_starts(self) -> dict[tuple[str, str], int]:
        """(source, stream) -> start offset of the oldest row held back, for held runs."""
        return {k: r.first.start for k, r in self._runs.items() if r.held and r.first is not None}

    def _summary(self, run: _Run) -> Record:
        assert run.first is not None and run.last is not None
        last, n = run.last, run.held
        row = dict(last.row)
        message = row.get("Message")
        text = truncate_utf8(message, SUMMARY_TEXT_BYTES)[0] if isinstance(message, str) else ""
        row["Message"] = f"[repeated {n} more times] {text}"
        props = row.get("Properties")
        props = dict(props) if isinstance(props, dict) else {}
        hal = props.get(PROP_HAL)
        hal = dict(hal) if isinstance(hal, dict) else {}
        hal[HAL_REPEATED] = n
        hal[HAL_REPEATED_SINCE] = run.first.row.get("TimeGenerated", "")
        props[PROP_HAL] = hal
        row["Properties"] = props
        run.held, run.first, run.last = 0, None, None
        self.count("summaries")
        return Record(
            row=row, stream=last.stream, start=last.start, end=last.end, source=last.source
        )
