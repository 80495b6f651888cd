"""Record building: a parsed row made complete, attributed and within limits.

Each kind of line (wire, JSON, text) becomes a row here, and :meth:`RecordMaker._record`
finishes every row the same way: the trust rule (:mod:`.trust`), the 64 KB limits
(:mod:`.limits`), ``Properties.hal`` (stream, record id, format, offset, notes),
``--resend``'s kept ids. The careful path's end; the wire fast path
(:mod:`.fastpath`) builds the same rows its own way and is checked against this one.

:class:`RecordMaker` is the lowest of the parser's rooms (records, then
:mod:`.held`, :mod:`.fastpath`, :mod:`.parser`); it declares the state they share,
which :class:`~hal_logging.pipeline.parsing.parser.Parser` sets up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from hal_logging import _json, schema
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing import docker
from hal_logging.pipeline.parsing.foreign_json import row_from_foreign
from hal_logging.pipeline.parsing.ids import _OFFSET_HEX, RESEND_ID, _id_prefix
from hal_logging.pipeline.parsing.limits import cut_columns, fit_meta, fit_properties
from hal_logging.pipeline.parsing.text import TextInfo
from hal_logging.pipeline.parsing.timestamps import format_epoch
from hal_logging.pipeline.parsing.trust import CLAIM_SKEW, apply_trust, demote_reserved_logger
from hal_logging.pipeline.parsing.wire import row_from_wire

_LOGGERS: Final = {
    "stdout": schema.LOGGER_STDOUT,
    "stderr": schema.LOGGER_STDERR,
}
_MAX: Final = schema.MAX_FIELD_BYTES
_MARKER: Final = schema.TRUNCATION_MARKER
_MARKER_BYTES: Final = len(schema.TRUNCATION_MARKER.encode())
#: Inputs up to this size cannot produce an over-long field: checks are skipped.
_SMALL: Final = (_MAX - 4096) // 3
_BLANK_ROW: Final[dict[str, Any]] = dict.fromkeys(schema.COLUMN_NAMES[:-1], "")
_ROW_LIKE: Final = frozenset(("TimeGenerated", "Level", "Message"))
_PROP_HAL: Final = schema.PROP_HAL
_HAL_RECORD_ID: Final = schema.HAL_RECORD_ID
_DEAD_LETTER: Final = "dead_letter"


class RecordMaker:
    """Rows of each kind, finished into records; the state the parser's rooms share."""

    # Set by Parser.__init__ (see there).
    stream: str
    source: str
    input_format: str
    multiline_timeout: float
    log_type: str
    resend: bool
    resent: int
    dead_letters: int
    not_resent: int
    _trust: tuple[tuple[str, str], ...]
    _wire_first: bool
    _partials: dict[str, docker.Partial]
    _skip_from: int | None
    _prefixes: dict[str, str]
    _last_received: float
    _last_received_str: str
    _id_one: str
    _id_format: str
    _read_time_hit: bool
    _bounded: bool
    _time_lo: str
    _time_hi: str
    _hi_received: float
    _time_secs: tuple[str, str]

    def _received(self, received: float) -> str:
        if received != self._last_received:
            self._last_received = received
            self._last_received_str = format_epoch(received)
        return self._last_received_str

    def _bound_hi(self, received: float) -> None:
        """The latest time a line read at ``received`` may claim (once per read time)."""
        if received != self._hi_received:
            self._hi_received = received
            self._time_hi = format_epoch(received + CLAIM_SKEW)
            self._time_secs = (self._time_secs[0], self._time_hi[:20])

    def _bound_time(self, row: dict[str, Any], hal: dict[str, Any], received: float) -> None:
        """A time outside the writer's lifetime: kept as a claim, the read time used."""
        tg = row["TimeGenerated"]
        self._bound_hi(received)
        if tg < self._time_lo or tg > self._time_hi:
            hal.setdefault(schema.HAL_CLAIMED, {})["TimeGenerated"] = tg
            row["TimeGenerated"] = self._received(received)

    def _wire(self, payload: bytes | str, line: Line, size: int) -> Record | None:
        """A wire line (``payload``; where from: ``line``), or None when it is not a JSON object."""
        obj = _load_object(payload)
        if obj is None:
            return None
        hal: dict[str, Any] = {}
        if isinstance(payload, bytes) and not payload.isascii() and not _is_utf8(payload):
            hal["problems"] = ["invalid UTF-8 replaced with U+FFFD"]
        return self._from_wire(obj, line, hal, size, marked=True)

    def _from_wire(
        self, obj: dict[str, Any], line: Line, hal: dict[str, Any], size: int, *, marked: bool
    ) -> Record:
        """The record of a wire-shaped object (``marked``: it carried the version marker).

        A reserved logger name is demoted to a claim, except on a marked line
        under --resend (the VM side's own files: its rows stay its own); the
        time is bounded by the writer's lifetime when one is known.
        """
        row = row_from_wire(obj, line.time or self._received(line.received), hal)
        if not marked:
            hal.pop("wire_version", None)
        if not (marked and self.resend):
            demote_reserved_logger(row, hal)
        if self._bounded:
            self._bound_time(row, hal, line.received)
        return self._record(row, hal, line.stream, line.start, line.end, line.via + "wire", size)

    def _json(
        self, text: str, line: Line, size: int, problems: Sequence[str] | None = None
    ) -> Record | None:
        """A JSON object line: a row-shaped one as wire, another as foreign JSON."""
        obj = _load_object(text)
        if obj is None:
            return None
        hal: dict[str, Any] = {}
        if _ROW_LIKE <= obj.keys() and isinstance(obj.get("Properties", {}), dict):
            # A row without the version marker (keys reordered by a tool): a wire line.
            hal["problems"] = ["row-shaped JSON without the wire version marker"]
            if problems:
                hal["problems"].extend(problems)
            return self._from_wire(obj, line, hal, size, marked=False)
        partial, fmt = row_from_foreign(obj, text, hal)
        if problems:
            hal.setdefault("problems", []).extend(problems)
        row = dict(_BLANK_ROW)
        row["TimeGenerated"] = line.time or self._received(line.received)
        row["LoggerName"] = _LOGGERS.get(line.stream, schema.LOGGER_MERGED)
        row.update(partial)
        demote_reserved_logger(row, hal)  # another logger's JSON may name one too
        return self._record(row, hal, line.stream, line.start, line.end, line.via + fmt, size)

    def _text_record(
        self,
        info: TextInfo,
        line: Line,
        size: int,
        cut: int,
        problems: Sequence[str] | None = None,
    ) -> Record:
        stream = line.stream
        row = dict(_BLANK_ROW)
        row["TimeGenerated"] = line.time or info.time or self._received(line.received)
        row["Level"] = info.level
        row["Message"] = info.message
        row["LoggerName"] = _LOGGERS.get(stream, schema.LOGGER_MERGED)
        props: dict[str, Any] = {}
        if info.logger:
            props["logger"] = info.logger
        row["Properties"] = props
        hal: dict[str, Any] = {}
        if problems:
            hal["problems"] = list(problems)
        if cut > 0:
            _mark_cut(row, hal, cut)
        return self._record(row, hal, stream, line.start, line.end, line.via + info.fmt, size)

    def _record(
        self,
        row: dict[str, Any],
        hal: dict[str, Any],
        stream: str,
        start: int,
        end: int,
        fmt: str,
        size: int,
    ) -> Record:
        """Finish a row: trust, limits, Properties.hal; wrap it in a Record."""
        if self._skip_from is not None:
            if self._skip_from < start:
                start = self._skip_from
            self._skip_from = None
        if self.resend:
            if fmt.endswith("wire") and self._resent(row, hal):
                if size > _SMALL:
                    props = row["Properties"]
                    _fit_row(row, props, props.pop(schema.PROP_HAL))
                return Record(row, stream, start, end, self.source)
            self.not_resent += 1
        prefix = self._prefixes.get(stream)
        if prefix is None:
            prefix = self._prefixes[stream] = _id_prefix(self.source, stream)
        meta: dict[str, Any] = {
            schema.HAL_STREAM: stream,
            schema.HAL_RECORD_ID: prefix + _OFFSET_HEX % start,
            schema.HAL_FORMAT: fmt,
            schema.HAL_OFFSET: start,
        }
        if hal:
            meta.update(hal)
        apply_trust(row, self._trust, meta)
        props = row["Properties"]
        if schema.PROP_HAL in props:
            meta.setdefault(schema.HAL_CLAIMED, {})["hal"] = props.pop(schema.PROP_HAL)
        if size > _SMALL:
            _fit_row(row, props, meta)
        else:
            props[schema.PROP_HAL] = meta
            row["Properties"] = props
        return Record(row, stream, start, end, self.source)

    def _resent(self, row: dict[str, Any], notes: dict[str, Any]) -> bool:
        """``--resend``: keep the row's own Properties.hal if it has a valid record id.

        The context columns stay as written (no trust rule); the parser's notes
        about this line (``problems``...) are added where the row has none;
        ``dead_letter`` is dropped and counted. False: treat the row as usual.
        """
        props = row["Properties"]
        meta = props.get(_PROP_HAL)
        if type(meta) is not dict:
            return False
        rid = meta.get(_HAL_RECORD_ID)
        if type(rid) is not str or RESEND_ID.fullmatch(rid) is None:
            return False
        meta = dict(meta)
        if meta.pop(_DEAD_LETTER, None) is not None:
            self.dead_letters += 1
        for key, value in notes.items():
            meta.setdefault(key, value)
        props[_PROP_HAL] = meta
        self.resent += 1
        return True


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fit_row(row: dict[str, Any], props: dict[str, Any], meta: dict[str, Any]) -> None:
    """A long line's row within the service's limits: columns cut, Properties fitted,
    then ``meta`` (Properties.hal, which records the cuts) set as its last key."""
    cut_columns(row, meta)
    props = fit_properties(props, meta)
    fit_meta(meta)
    props[schema.PROP_HAL] = meta
    row["Properties"] = props


def _load_object(payload: bytes | str) -> dict[str, Any] | None:
    """The JSON object a line holds (leniently: see ``_lenient_loads``), else None."""
    try:
        obj = _json.loads(payload)
    except _json.JSONDecodeError:
        obj = _lenient_loads(payload)
    return obj if type(obj) is dict else None


def _lenient_loads(payload: bytes | str) -> Any:
    """JSON that orjson refused (invalid UTF-8, lone surrogates): decoded leniently."""
    import json

    try:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        # NaN/Infinity (python-json-logger with the stdlib encoder writes them): null.
        obj = json.loads(text, parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return None
    # Lone surrogates cannot be encoded as UTF-8 again: replace them.
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        text = json.dumps(obj, ensure_ascii=False)
        obj = json.loads(
            text.encode("utf-8", "replace").decode("utf-8", "replace"),
            parse_constant=lambda _: None,
        )
    return obj


def _mark_cut(row: dict[str, Any], hal: dict[str, Any], length: int) -> None:
    """The framer cut this line: make the cut visible and note the real length."""
    msg = row["Message"]
    if not msg.endswith(_MARKER):
        head = msg.encode("utf-8", "surrogatepass")[: _MAX - _MARKER_BYTES]
        row["Message"] = head.decode("utf-8", "ignore") + _MARKER
    hal.setdefault(schema.HAL_ORIGINAL_LENGTH, {})["Message"] = length
