"""Held groups: lines that may belong together (a traceback, an ERROR line that
may be its header) are held per stream until they are complete.

A group closes when a line that does not belong arrives, when :meth:`Parser.poll`
finds it older than ``multiline_timeout`` (since its last line), or at
:meth:`Parser.finish`; a traceback longer than the group caps is flushed in
parts (``Properties.hal.part``). :attr:`Parser.held_start` keeps the checkpoint
behind the oldest held line meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hal_logging import schema
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing.records import _BLANK_ROW, _LOGGERS, RecordMaker
from hal_logging.pipeline.parsing.text import TextInfo
from hal_logging.pipeline.parsing.traceback import TracebackGroup, starts_traceback


@dataclass(slots=True)
class _Held:
    """A multi-line group in progress on one stream."""

    start: int
    end: int
    received: float  # of the last line: the deadline counts from it
    first_received: float
    time_hint: str | None
    prefix: str
    header: TextInfo | None = None
    group: TracebackGroup | None = None


class HeldGroups(RecordMaker):
    """The held groups of a parser: continued, closed, made into records."""

    _held: dict[str, _Held]

    def _continue_held(
        self, held: _Held, stream: str, text: str, end: int, received: float, out: list[Record]
    ) -> bool:
        """True when the group held on ``stream`` takes the line ``text``; else the
        group is closed (its record appended to ``out``) and the line is the caller's."""
        if held.group is not None:
            if held.group.accepts(text):
                held.group.touch(end, received)
                held.end, held.received = end, received
                if held.group.full():
                    # Flushed as it is; what follows may continue it in a new part.
                    group = held.group
                    out.extend(self._close(stream))
                    self._held[stream] = _Held(
                        end,
                        end,
                        received,
                        received,
                        held.time_hint,
                        held.prefix,
                        group=group.spawn(),
                    )
                return True
        elif text and starts_traceback(text):
            held.group = TracebackGroup(text, held.start, end, received)
            held.end, held.received = end, received
            return True
        out.extend(self._close(stream))
        return False

    def _close(self, stream: str) -> list[Record]:
        """The record of the group held on ``stream``, if any."""
        held = self._held.pop(stream, None)
        if held is None:
            return []
        header = held.header
        if held.group is None:
            assert header is not None
            return [
                self._text_record(
                    header,
                    Line(
                        b"",
                        stream,
                        held.start,
                        held.end,
                        held.first_received,
                        time=held.time_hint,
                        via=held.prefix,
                    ),
                    len(header.message) * 3,
                    -1,
                )
            ]
        group = held.group
        if not group.lines:
            return []  # an empty continuation: nothing followed the flushed part
        exc = group.exception()
        row = dict(_BLANK_ROW)
        row["TimeGenerated"] = (
            held.time_hint
            or (header.time if header else None)
            or self._received(held.first_received)
        )
        row["Level"] = "CRITICAL" if header is not None and header.level == "CRITICAL" else "ERROR"
        row["Message"] = header.message if header is not None else group.summary()
        row["LoggerName"] = _LOGGERS.get(stream, schema.LOGGER_MERGED)
        props: dict[str, Any] = {}
        if header is not None and header.logger:
            props["logger"] = header.logger
        props[schema.PROP_EXCEPTION] = exc
        row["Properties"] = props
        hal: dict[str, Any] = {}
        if group.omitted_bytes():
            hal[schema.HAL_ORIGINAL_LENGTH] = {"Properties.exception.stacktrace": group.nbytes}
        if group.part > 1 or group.full():
            hal["part"] = group.part  # a traceback longer than the caps, in several rows
        size = group.nbytes + (len(header.message) if header else 0)
        return [
            self._record(
                row, hal, stream, held.start, held.end, held.prefix + "traceback", size * 3
            )
        ]
