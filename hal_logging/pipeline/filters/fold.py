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

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import PROP_HAL, STRING_COLUMNS, truncate_utf8

#: How much of the repeated message the summary row repeats.
SUMMARY_TEXT_BYTES = 1024
HAL_REPEATED = "repeated"
HAL_REPEATED_SINCE = "repeated_since"


_get_cols = operator.itemgetter(*STRING_COLUMNS)


def _columns(row: dict[str, Any]) -> tuple[Any, ...]:
    """The string columns of a row (a snapshot: strings do not change)."""
    try:
        return _get_cols(row)
    except KeyError:
        return tuple(row.get(c) for c in STRING_COLUMNS)


def _same_properties(a: Any, b: Any) -> bool:
    """Properties equal apart from ``hal`` (the pipeline's per-record metadata)."""
    if a is b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: v for k, v in a.items() if k != PROP_HAL} == {
            k: v for k, v in b.items() if k != PROP_HAL
        }
    return bool(a == b)


@dataclass(slots=True)
class _Run:
    #: The row the run is about: the last row shipped on its stream. Compared,
    #: not copied (rows do not change once past the filters), Message first:
    #: the cheap test decides almost every time.
    row: dict[str, Any]
    held: int = 0
    first: Record | None = None  # first held record
    last: Record | None = None  # last held record


def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a.get("Message") == b.get("Message")
        and _columns(a) == _columns(b)
        and _same_properties(a.get("Properties"), b.get("Properties"))
    )


class FoldFilter(Filter):
    """Stats: ``folded`` (rows held and counted), ``summaries`` (summary rows added)."""

    name = "fold"

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[tuple[str, str], _Run] = {}

    def process(self, record: Record) -> Iterable[Record]:
        key = (record.source, record.stream)
        row = record.row
        run = self._runs.get(key)
        if run is None:
            self._runs[key] = _Run(row)
            return (record,)
        if _same_row(run.row, row):
            if run.first is None:
                run.first = record
            run.last = record
            run.held += 1
            self.count("folded")
            return ()
        if run.held:
            summary = self._summary(run)
            run.row = row
            return (summary, record)
        run.row = row
        return (record,)

    def process_batch(self, records: list[Record]) -> list[Record]:
        """``process`` over a list; a record that ends no run and starts none passes at once."""
        out: list[Record] = []
        append = out.append
        runs = self._runs
        key: tuple[str, str] | None = None
        run: _Run | None = None
        for record in records:
            if key is None or record.source != key[0] or record.stream != key[1]:
                key = (record.source, record.stream)
                run = runs.get(key)
            if run is not None and not run.held:
                row = record.row
                if row.get("Message") != run.row.get("Message"):  # the usual: not a repeat
                    run.row = row
                    append(record)
                    continue
            out.extend(self.process(record))
            run = runs.get(key)
        return out

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
