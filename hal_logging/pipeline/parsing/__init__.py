"""Parsing: framed lines -> rows of the one schema (docs/contract.md §1-3).

:class:`Parser` takes the :class:`~hal_logging.pipeline.model.Line` s of one source
and returns :class:`~hal_logging.pipeline.model.Record` s whose rows are complete
(13 columns, Level in LEVELS, every field within 64 KB) and attributed (the trust
rule applied). It never raises on input: every line becomes part of a row
(blank lines excepted, below).

What each line is, in order (``Properties.hal.format``):

========================  ==========================================================
``wire``                  a line from ``configure()`` (:mod:`.wire`), the fast path
``json``, ``json:<lib>``  another logger's JSON object (:mod:`.foreign_json`)
``traceback``             a raw Python traceback, with its logging header (:mod:`.traceback`)
``text``, ``text:logging``  anything else (:mod:`.text`), escapes removed (:mod:`.terminal`)
========================  ==========================================================

Docker's formats (:mod:`.docker`) are unwrapped first and prefix the format:
``docker-json+wire``, ``docker-timestamps+text``... ``input_format`` chooses:
``auto`` (recognise per line), ``docker-json``, ``docker-timestamps`` or ``raw``.

``Properties.hal`` always holds ``stream``, ``record_id`` (:func:`record_id` of the
source, stream and start offset: the same bytes give the same id in every run),
``format`` and ``offset`` (the record's first source byte; ``Record.start``); and when
relevant ``claimed`` (trust rule, :mod:`.trust`), ``original_length`` (64 KB cuts,
:mod:`.limits`; ``Message`` is the real line length when the framer cut the line),
``original_level``, ``original_time``, ``problems`` (a wire line that broke its
promise), ``wire_version`` (a marker other than 1), ``part`` (a traceback longer
than the group caps, split over several rows). A logger name read from a text
layout (``ERROR:agent.tools:...``) goes to ``Properties.logger``; LoggerName stays
``docker.stdout``/``docker.stderr``/``docker``.

Blank lines (nothing visible once escapes are removed) make no row: their bytes
are folded into the span of the next record (its ``start``), and
:attr:`Parser.held_start` covers them meanwhile, so offsets stay contiguous.

Resending (``resend=True``, ``hal-logging-forward --resend FILE``): FILE was
written by hal-logging itself (the uploader's dead-letter file, the handler's
spill file, wrap mode's ``hal-forward-undelivered-*.jsonl``), so a wire line
that carries a valid ``Properties.hal.record_id`` (:data:`RESEND_ID`) keeps
that id, its context columns and its ``Properties.hal`` as written, instead of
the trust rule: a row that was both delivered (outcome unknown) and kept can
then be de-duplicated. ``hal.dead_letter`` (the service's earlier answer) is
dropped from the resent row and counted (:attr:`Parser.dead_letters`). Other
lines are treated as usual. Never automatic: a container could forge record
ids to make the workspace drop real rows.

Multi-line groups (a traceback, or an ERROR line that may be its header) are held
per stream until a line that does not belong arrives, :meth:`Parser.poll` finds them
older than ``multiline_timeout`` (since their last line), or :meth:`Parser.finish`.
:attr:`Parser.held_start` tells the checkpoint how far it may go meanwhile.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from hal_logging import _json, schema
from hal_logging.pipeline.framing import MAX_JSON_BYTES
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing import docker
from hal_logging.pipeline.parsing.foreign_json import row_from_foreign
from hal_logging.pipeline.parsing.levels import LEVEL_SET
from hal_logging.pipeline.parsing.limits import cut_columns, fit_meta, fit_properties
from hal_logging.pipeline.parsing.terminal import (
    NUL_REMOVED,
    clean,
    clean_noted,
    final_state,
    strip_escapes,
)
from hal_logging.pipeline.parsing.text import TextInfo, parse_text
from hal_logging.pipeline.parsing.timestamps import canonical, format_epoch
from hal_logging.pipeline.parsing.traceback import TracebackGroup, starts_traceback
from hal_logging.pipeline.parsing.trust import (
    CLAIM_SKEW,
    RESERVED_LOGGER,
    apply_trust,
    demote_reserved_logger,
    trusted_items,
)
from hal_logging.pipeline.parsing.wire import row_from_wire

__all__ = ["INPUT_FORMATS", "RESEND_ID", "Parser", "record_id"]

INPUT_FORMATS: Final = ("auto", "docker-json", "docker-timestamps", "raw")

_WIRE_PREFIX: Final = schema.WIRE_PREFIX
_WIRE_PREFIX_STR: Final = schema.WIRE_PREFIX.decode()
_LOGGERS: Final = {
    "stdout": schema.LOGGER_STDOUT,
    "stderr": schema.LOGGER_STDERR,
}
_MAX: Final = schema.MAX_FIELD_BYTES
_MARKER: Final = schema.TRUNCATION_MARKER
_MARKER_BYTES: Final = len(schema.TRUNCATION_MARKER.encode())
#: Inputs up to this size cannot produce an over-long field: checks are skipped.
_SMALL: Final = (_MAX - 4096) // 3
_HIGH: Final = frozenset(("ERROR", "CRITICAL"))
_BLANK_ROW: Final[dict[str, Any]] = dict.fromkeys(schema.COLUMN_NAMES[:-1], "")
_ROW_LIKE: Final = frozenset(("TimeGenerated", "Level", "Message"))
_loads: Final = orjson.loads
_WIRE_VERSION: Final = schema.WIRE_VERSION
_VERSION_KEY: Final = schema.WIRE_VERSION_KEY
_WIRE_LEN: Final = len(schema.COLUMN_NAMES) + 1  # the columns and the version marker
#: orjson's own objects for the wire keys. orjson keeps a cache of map keys for
#: the process, so the lines it parses share these very objects: a dict lookup
#: that finds the same object skips comparing strings (measured: the fast path's
#: 14 lookups cost half). If the cache ever drops one, lookups still work (by
#: equality), only slower.
_KEY: Final[dict[str, str]] = {
    k: k for k in _loads(orjson.dumps(dict.fromkeys((_VERSION_KEY, *schema.COLUMN_NAMES), 0)))
}
_K_VERSION: Final = _KEY[_VERSION_KEY]
#: The wire fast path's text columns that change from line to line (it gets
#: Properties and the version marker with them)...
_HEAD_COLUMNS: Final = ("TimeGenerated", "Level", "Message", "LoggerName")
_get_head: Final = operator.itemgetter(
    *(_KEY[c] for c in (*_HEAD_COLUMNS, "Properties", _VERSION_KEY))
)
#: ... and the context columns (docs/contract.md §3), the same from line to line: checked
#: (types, trust rule) only when they change.
_CTX_COLUMNS: Final = tuple(c.name for c in schema.CONTEXT_COLUMNS)
_CTX_INDEX: Final = {c: i for i, c in enumerate(_CTX_COLUMNS)}
_get_ctx: Final = operator.itemgetter(*(_KEY[c] for c in _CTX_COLUMNS))
assert sorted(_HEAD_COLUMNS + _CTX_COLUMNS) == sorted(schema.COLUMN_NAMES[:-1])
_PROP_HAL: Final = schema.PROP_HAL
_HAL_STREAM: Final = schema.HAL_STREAM
_HAL_RECORD_ID: Final = schema.HAL_RECORD_ID
_HAL_FORMAT: Final = schema.HAL_FORMAT
_HAL_OFFSET: Final = schema.HAL_OFFSET
#: A record id that ``--resend`` keeps: :func:`record_id`'s 32 hex digits, or
#: the in-process handler's ``<12 hex>-<pid hex>-<seq hex>``.
RESEND_ID: Final = re.compile(r"[0-9a-f]{32}|[0-9a-f]{12}-[0-9a-f]{1,16}-[0-9a-f]{1,16}")
_DEAD_LETTER: Final = "dead_letter"


def record_id(source: str, stream: str, start: int) -> str:
    """Stable id of the record that starts at ``start`` in ``stream`` of ``source`` (hex).

    32 hex digits: 20 of BLAKE2b(``source\\0stream\\0``) (80 bits), then the start
    offset in 12 (more past 256 TB). The same source bytes give the same id in
    every run, so re-sent rows can be de-duplicated, and no two records of the
    same stream share an offset. Why not a hash of all three: ids of one source
    then grow with the offset, so the local workspace's UNIQUE index on them
    grows at its end, like an append; random ids dirtied an index page per row
    in every batch (measured: 38% of the workspace's write cost, growing with
    its size). Two sources collide only if their 80-bit prefixes do (for a
    million sources in one workspace, a chance of about 4e-13).
    """
    return _id_prefix(source, stream) + _OFFSET_HEX % start


_OFFSET_HEX: Final = "%012x"
_start_of: Final = operator.attrgetter("start")


def _id_prefix(source: str, stream: str) -> str:
    """The part of a record id that is the same for every record of a stream."""
    key = f"{source}\0{stream}\0".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=10).hexdigest()


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


class Parser:
    """Lines of one source -> records; see the module docstring."""

    def __init__(
        self,
        *,
        stream: str,
        source: str,
        trusted: Mapping[str, str],
        input_format: str = "auto",
        multiline_timeout: float = 1.0,
        log_type: str = schema.LOG_TYPE_AGENT,
        resend: bool = False,
        not_before: float | None = None,
    ) -> None:
        if input_format not in INPUT_FORMATS:
            raise ValueError(
                f"input_format {input_format!r} is not one of {', '.join(INPUT_FORMATS)}"
            )
        self.stream = stream if stream in schema.STREAMS else "unknown"
        self.source = source
        self.input_format = input_format
        self.multiline_timeout = multiline_timeout
        self.log_type = log_type or schema.LOG_TYPE_AGENT
        self._trust = trusted_items(trusted, self.log_type)
        self._wire_first = input_format in ("auto", "raw")
        self._held: dict[str, _Held] = {}
        self._partials: dict[str, docker.Partial] = {}
        self._skip_from: int | None = None
        self._prefixes: dict[str, str] = {}  # stream -> its record ids' prefix
        self._last_received = -1.0
        self._last_received_str = ""
        # The wire fast path's trust check (see _wire_run): the context columns'
        # values as one tuple, compared at once with those of a line before that
        # passed; the trusted columns' claims among them compared with the trusted
        # values (the container usually claims exactly those) or with the last
        # claims that differed only by being empty (a container that does not
        # know its context). (One index more than needed in trust_get: itemgetter
        # of a single one would not return a tuple.)
        trust_idx = [_CTX_INDEX[c] for c, _ in self._trust]
        trust_get = operator.itemgetter(*trust_idx, trust_idx[0])
        trusted_ctx = dict.fromkeys(_CTX_COLUMNS, "") | dict(self._trust)
        #: What the wire fast path reads per run, unpacked at once (see _wire_run).
        self._fast = (
            self.stream,
            source,
            trust_get,
            trust_get(tuple(trusted_ctx.values())),
            {_KEY[c]: v for c, v in self._trust},
            self._trust,
        )
        #: And what it remembers from line to line: the last context that passed,
        #: whether its claims had blanks to fill, the last claims with blanks,
        #: "YYYY-MM-DDTHH:MM:SS." of the last canonical time seen, and the last
        #: logger name that is not the VM side's.
        self._fast_state: tuple[tuple[str, ...] | None, bool, tuple[str, ...] | None, str, str] = (
            None,
            False,
            None,
            "",
            "",
        )
        # A record id is this prefix and the offset (see record_id); as formats
        # (hex digits: no "%" in the prefix), for one id and for a chunk's ids.
        self._id_one = _id_prefix(source, self.stream) + _OFFSET_HEX
        self._id_format = self._id_one + " "
        self._read_time_hit = False  # a fast-path row of this chunk has the read time
        # The writer's lifetime (``not_before``: when a wrapped command started,
        # epoch seconds): a wire line's time before it (less CLAIM_SKEW) or after
        # its read time (plus CLAIM_SKEW) is a claim, replaced by the read time.
        # As canonical strings, compared as strings; unbounded: "" and "\uffff"
        # (the fast path compares either way: no branch per line).
        self._bounded = not_before is not None
        self._time_lo = format_epoch(not_before - CLAIM_SKEW) if not_before is not None else ""
        self._time_hi = "\uffff"
        self._hi_received = -1.0
        #: Their seconds ("YYYY-MM-DDTHH:MM:SS."), for the wire fast path.
        self._time_secs = (self._time_lo[:20], self._time_hi)
        self.resend = resend
        #: With ``resend``: rows that kept their record id, context and
        #: Properties.hal; those of them that carried a dead-letter answer; and
        #: rows without a valid record id (treated as container output).
        self.resent = 0
        self.dead_letters = 0
        self.not_resent = 0

    # -- public API ----------------------------------------------------------------

    @property
    def held_start(self) -> int | None:
        """Start offset of the oldest line held back (open group, docker partial,
        skipped blank lines), or None: a checkpoint must not pass it."""
        starts = [h.start for h in self._held.values()]
        starts.extend(p.start for p in self._partials.values())
        if self._skip_from is not None:
            starts.append(self._skip_from)
        return min(starts) if starts else None

    def feed(self, line: Line) -> list[Record]:
        """Records completed by ``line`` (possibly none, possibly a held group)."""
        return self._feed(line, True)

    def _feed(self, line: Line, fast: bool) -> list[Record]:
        """:meth:`feed`; ``fast=False`` for a line the fast path has just refused
        (:meth:`feed_many`): not tried twice, which would cost each such line (a
        wire line with a claim to keep, say) a second parse."""
        data = line.data
        try:
            if self._wire_first and data.startswith(_WIRE_PREFIX) and not self._held:
                if fast and self._skip_from is None:  # (_wire_run checks the line's length)
                    if self._bounded:  # (the careful path bounds its own times)
                        self._bound_hi(line.received)
                    out: list[Record] = []
                    if self._wire_run([line], 0, [self._id_one % line.start], out, None):
                        return out
                if line.length < 0:
                    record = self._wire(
                        data, self.stream, line.start, line.end, line.received, None, "", len(data)
                    )
                    if record is not None:
                        return [record]
            return self._route(line)
        except Exception as exc:  # defined behaviour for anything unforeseen: a row
            return self._fallback(line, exc)

    def feed_many(self, lines: list[Line]) -> list[Record]:
        """``feed`` over the lines of one chunk, in order, then the read-time walk
        (:func:`_clamp_read_times`). The forwarder's hot loop: runs of wire lines
        take the fast path without a call to ``feed`` each."""
        out: list[Record] = []
        n = len(lines)
        if not n:
            return out
        read_time = self._received(lines[-1].received)
        if self._bounded:
            self._bound_hi(lines[-1].received)
        self._read_time_hit = False
        slow = False  # a line went through feed(): its row may carry the read time
        feed = self._feed
        wire = self._wire_first
        ids: list[str] | None = None
        i = 0
        while i < n:
            line = lines[i]
            if (
                wire
                and line.data.startswith(_WIRE_PREFIX)
                and not self._held
                and self._skip_from is None
            ):
                if ids is None:
                    # The lines' record ids, formatted at once (one call, not one a line).
                    ids = (self._id_format * n % tuple(map(_start_of, lines))).split()
                i = self._wire_run(lines, i, ids, out, read_time)
                if i == n:
                    break
                line = lines[i]  # the line it did not take: the careful path
                i += 1
                out.extend(feed(line, False))
            else:
                i += 1
                out.extend(feed(line, True))
            slow = True
        if (slow or self._read_time_hit) and len(out) > 1:
            # (Only fast-path rows, none at the read time: the walk would change nothing.)
            _clamp_read_times(out, read_time)
        return out

    def poll(self, now: float) -> list[Record]:
        """Close groups and docker partials whose last line is older than the timeout."""
        out: list[Record] = []
        limit = now - self.multiline_timeout
        for stream in [s for s, h in self._held.items() if h.received <= limit]:
            out.extend(self._close(stream))
        for stream in [s for s, p in self._partials.items() if p.received <= limit]:
            out.extend(self._flush_partial(stream))
        return out

    def finish(self) -> list[Record]:
        """Everything still held, as records (end of input)."""
        out: list[Record] = []
        for stream in list(self._partials):
            out.extend(self._flush_partial(stream))
        for stream in list(self._held):
            out.extend(self._close(stream))
        self._skip_from = None
        return out

    # -- routing -------------------------------------------------------------------

    def _route(self, line: Line) -> list[Record]:
        data = line.data
        fmt = self.input_format
        cut = line.length if line.length > len(data) else -1
        if fmt == "docker-json" or (fmt == "auto" and data.startswith(docker.JSON_PREFIX)):
            rec = docker.parse_json_line(data) if cut < 0 else None
            if rec is not None:
                return self._docker_piece(line, rec)
        elif fmt == "docker-timestamps" or (fmt == "auto" and data[:1].isdigit()):
            split = docker.split_timestamp(data, strict=fmt == "auto")
            if split is not None:
                when, rest = split
                return self._payload(
                    rest,
                    self.stream,
                    line.start,
                    line.end,
                    line.received,
                    when,
                    "docker-timestamps+",
                    cut,
                )
        return self._payload(data, self.stream, line.start, line.end, line.received, None, "", cut)

    def _docker_piece(self, line: Line, rec: docker.DockerRecord) -> list[Record]:
        stream = rec.stream
        partial = self._partials.get(stream)
        log = rec.log
        if not log.endswith("\n"):
            if partial is None:
                cap = MAX_JSON_BYTES if log.startswith("{") else _MAX * 2
                partial = docker.Partial(line.start, line.end, line.received, rec.time, cap)
                self._partials[stream] = partial
            partial.add(log)
            partial.received = line.received
            partial.end = line.end
            return []
        # "\r\n" (a container with a terminal, docker run -t) is one line end, as in the framer.
        log = log[:-2] if log.endswith("\r\n") else log[:-1]
        if partial is None:
            return self._payload(
                log, stream, line.start, line.end, line.received, rec.time, "docker-json+", -1
            )
        del self._partials[stream]
        partial.add(log)
        cut = partial.length if partial.length > partial.kept else -1
        return self._payload(
            partial.text(),
            stream,
            partial.start,
            line.end,
            line.received,
            partial.time or rec.time,
            "docker-json+",
            cut,
        )

    def _flush_partial(self, stream: str) -> list[Record]:
        partial = self._partials.pop(stream)
        cut = partial.length if partial.length > partial.kept else -1
        return self._payload(
            partial.text(),
            stream,
            partial.start,
            partial.end,
            partial.received,
            partial.time,
            "docker-json+",
            cut,
        )

    def _payload(
        self,
        payload: bytes | str,
        stream: str,
        start: int,
        end: int,
        received: float,
        time_hint: str | None,
        prefix: str,
        cut: int,
    ) -> list[Record]:
        """One logical line (bytes from the framer, or str from a docker record)."""
        out: list[Record] = []
        if isinstance(payload, bytes):
            if cut < 0 and payload.startswith(_WIRE_PREFIX):
                record = self._wire(
                    payload, stream, start, end, received, time_hint, prefix, len(payload)
                )
                if record is not None:
                    out.extend(self._close(stream))
                    out.append(record)
                    return out
            text, noted = clean_noted(payload)
            problems: Sequence[str] | None = noted
            size = len(payload)
        else:
            if cut < 0 and payload.startswith(_WIRE_PREFIX_STR):
                record = self._wire(
                    payload, stream, start, end, received, time_hint, prefix, len(payload) * 3
                )
                if record is not None:
                    out.extend(self._close(stream))
                    out.append(record)
                    return out
            problems = _NUL_PROBLEM if "\x00" in payload else None
            text = strip_escapes(final_state(payload)).replace("\x00", "").rstrip()
            size = len(payload) * 3

        held = self._held.get(stream)
        if held is not None:
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
                    return out
            elif text and starts_traceback(text):
                held.group = TracebackGroup(text, held.start, end, received)
                held.end, held.received = end, received
                return out
            out.extend(self._close(stream))

        if not text.strip():
            if self._skip_from is None:
                self._skip_from = start
            return out
        if cut < 0 and text[0] == "{" and text[-1] == "}":
            record = self._json(
                text, stream, start, end, received, time_hint, prefix, size, problems
            )
            if record is not None:
                out.append(record)
                return out
        if starts_traceback(text):
            self._held[stream] = _Held(
                start,
                end,
                received,
                received,
                time_hint,
                prefix,
                group=TracebackGroup(text, start, end, received),
            )
            return out
        info = parse_text(text)
        if info.level in _HIGH and cut < 0:
            self._held[stream] = _Held(
                start, end, received, received, time_hint, prefix, header=info
            )
            return out
        record = self._text_record(
            info, stream, start, end, received, time_hint, prefix, size, cut, problems
        )
        if cut < 0 and text.isascii() and len(text) == len(payload) and type(payload) is bytes:
            # Nothing was decoded, removed (escapes, NUL) or stripped: the row's
            # strings are slices of the line (see Record.raw).
            record.raw = payload
        out.append(record)
        return out

    # -- the kinds of rows -------------------------------------------------------------

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

    def _wire_fast(self, data: bytes, start: int, end: int) -> Record | None:
        """One wire line through the fast path (see :meth:`_wire_run`), or None."""
        out: list[Record] = []
        line = Line(data, self.stream, start, end, 0.0)
        self._wire_run([line], 0, [self._id_one % start], out, None)
        return out[0] if out else None

    def _wire_run(
        self,
        lines: list[Line],
        i: int,
        ids: list[str],
        out: list[Record],
        read_time: str | None,
    ) -> int:
        """Wire lines exactly as ``configure()`` writes them, while they come.

        Takes ``lines`` from index ``i`` (``ids`` holds their record ids) and
        appends their records to ``out`` until a line it does not take; returns
        that line's index (for :meth:`feed`: the careful path), or
        ``len(lines)``. The caller checks that no group is held and no blank
        line is pending (nothing here changes either).

        The hot path of the forwarder: one ``orjson.loads``, the keys and the
        value types checked at once, the time by its shape, the trust rule by
        one tuple comparison; the parsed object becomes the row (keys in the
        line's order: ``configure()`` writes the table's). Anything
        unusual (odd types, a Properties.hal, differing claims, a long line, a
        blank line before it) is not taken, and the careful path gives the same
        row for the lines this one takes. A row whose time is ``read_time`` sets
        ``_read_time_hit`` (:func:`_clamp_read_times` must look at the chunk).
        """
        stream, source, trust_get, trust_vals, trust_map, trust = self._fast
        ctx_ok, blanks, claims_ok, time_head, logger_ok = self._fast_state
        # The writer's lifetime, checked with the time's shape (once per second): a
        # second strictly inside it passes; lines of a boundary second (the one the
        # command started in, the one after the read time) take the careful path,
        # which checks exactly. Unbounded: "" and "\uffff", always inside.
        lo, hi = self._time_secs
        if time_head >= hi:  # (the clock went back: check the second again)
            time_head = ""
        reserved = RESERVED_LOGGER
        append = out.append
        hit = False
        k = i
        try:
            for k in range(i, len(lines)):  # (k: the index returned)
                line = lines[k]
                data = line.data
                if line.length >= 0 or len(data) > _SMALL or not data.startswith(_WIRE_PREFIX):
                    break
                obj = _loads(data)  # a dict: the line starts with "{"
                if len(obj) != _WIRE_LEN:
                    break
                # The twelve text columns present (else KeyError: not taken); with
                # the marker and Properties that is all 14 keys.
                tg, level, msg, logger, props, version = _get_head(obj)
                ctx = _get_ctx(obj)
                del obj[_K_VERSION]
                start = line.start
                raw = None if 92 in data else data
                hal = {
                    _HAL_STREAM: stream,
                    _HAL_RECORD_ID: ids[k],
                    _HAL_FORMAT: "wire",
                    _HAL_OFFSET: start,
                }
                if (
                    type(msg) is not str
                    or type(logger) is not str
                    or type(version) is not int
                    or version != _WIRE_VERSION
                    # Properties an object without "hal" (else AttributeError: not taken)
                    or props.setdefault(_PROP_HAL, hal) is not hal
                    or level not in LEVEL_SET
                    # The VM side's logger names (a claim the careful path keeps)
                    or (logger != logger_ok and logger.startswith(reserved))
                    or "\x9b" in msg
                    or (raw is None and ("\x00" in msg or "\x1b" in msg))
                ):
                    break  # (obj was changed: the careful path parses the line again)
                if tg[:20] != time_head or len(tg) != 27 or tg[26] != "Z":
                    # Not the second of the line before: the full check (once per second;
                    # a TimeGenerated that is not a str always comes here, or raises).
                    if type(tg) is not str or not canonical(tg) or not lo < tg[:20] < hi:
                        break
                    time_head = tg[:20]
                elif not tg[20:26].isdigit() or not tg.isascii():  # the fraction: 6 ASCII digits
                    break
                logger_ok = logger
                if tg == read_time:
                    hit = True
                if ctx != ctx_ok:  # (else the context of a line before: known good)
                    "".join(ctx)  # all text (else TypeError: not taken)
                    claims = trust_get(ctx)
                    if claims == trust_vals:
                        blanks = False
                    elif claims == claims_ok or not _claims_differ(trust, claims):
                        # Nothing claimed that differs, only blanks: fill them in.
                        blanks = True
                        claims_ok = claims
                    else:
                        break  # a claim to keep: the careful path records it
                    ctx_ok = ctx
                if blanks:
                    obj.update(trust_map)
                # No backslash (92): every string of the row is verbatim in the line
                # (see Record.raw).
                append(Record(obj, stream, start, line.end, source, 0, raw))
            else:
                k = len(lines)
        except Exception:  # anything unforeseen (a missing key...): the careful path decides
            pass
        self._fast_state = (ctx_ok, blanks, claims_ok, time_head, logger_ok)
        if hit:
            self._read_time_hit = True
        return k

    def _wire(
        self,
        payload: bytes | str,
        stream: str,
        start: int,
        end: int,
        received: float,
        time_hint: str | None,
        prefix: str,
        size: int,
    ) -> Record | None:
        obj = _load_object(payload)
        if obj is None:
            return None
        hal: dict[str, Any] = {}
        if isinstance(payload, bytes) and not payload.isascii() and not _is_utf8(payload):
            hal["problems"] = ["invalid UTF-8 replaced with U+FFFD"]
        row = row_from_wire(obj, time_hint or self._received(received), hal)
        if not self.resend:  # --resend ships the VM side's own files: its rows stay its own
            demote_reserved_logger(row, hal)
        if self._bounded:
            self._bound_time(row, hal, received)
        return self._record(row, hal, stream, start, end, prefix + "wire", size)

    def _json(
        self,
        text: str,
        stream: str,
        start: int,
        end: int,
        received: float,
        time_hint: str | None,
        prefix: str,
        size: int,
        problems: Sequence[str] | None = None,
    ) -> Record | None:
        obj = _load_object(text)
        if obj is None:
            return None
        hal: dict[str, Any] = {}
        if _ROW_LIKE <= obj.keys() and isinstance(obj.get("Properties", {}), dict):
            # A row without the version marker (keys reordered by a tool): a wire line.
            hal["problems"] = ["row-shaped JSON without the wire version marker"]
            if problems:
                hal["problems"].extend(problems)
            row = row_from_wire(obj, time_hint or self._received(received), hal)
            hal.pop("wire_version", None)
            demote_reserved_logger(row, hal)
            if self._bounded:
                self._bound_time(row, hal, received)
            return self._record(row, hal, stream, start, end, prefix + "wire", size)
        partial, fmt = row_from_foreign(obj, text, hal)
        if problems:
            hal.setdefault("problems", []).extend(problems)
        row = dict(_BLANK_ROW)
        row["TimeGenerated"] = time_hint or self._received(received)
        row["LoggerName"] = _LOGGERS.get(stream, schema.LOGGER_MERGED)
        row.update(partial)
        demote_reserved_logger(row, hal)  # another logger's JSON may name one too
        return self._record(row, hal, stream, start, end, prefix + fmt, size)

    def _text_record(
        self,
        info: TextInfo,
        stream: str,
        start: int,
        end: int,
        received: float,
        time_hint: str | None,
        prefix: str,
        size: int,
        cut: int,
        problems: Sequence[str] | None = None,
    ) -> Record:
        row = dict(_BLANK_ROW)
        row["TimeGenerated"] = time_hint or info.time or self._received(received)
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
        return self._record(row, hal, stream, start, end, prefix + info.fmt, size)

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
                    stream,
                    held.start,
                    held.end,
                    held.first_received,
                    held.time_hint,
                    held.prefix,
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

    def _fallback(self, line: Line, exc: Exception) -> list[Record]:
        """A line the parser could not handle (a bug): kept as text, the error noted."""
        text = clean(line.data)
        row = dict(_BLANK_ROW)
        row["TimeGenerated"] = self._received(line.received)
        row["Level"] = "INFO"
        row["Message"] = text
        row["LoggerName"] = _LOGGERS.get(self.stream, schema.LOGGER_MERGED)
        row["Properties"] = {}
        hal = {"problems": [f"parser error {type(exc).__name__}: {exc}"]}
        if line.length > len(line.data):
            _mark_cut(row, hal, line.length)
        out = self.finish()
        out.append(
            self._record(row, hal, self.stream, line.start, line.end, "text", len(line.data))
        )
        return out


_NUL_PROBLEM: Final = (NUL_REMOVED,)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _claims_differ(trust: tuple[tuple[str, str], ...], claims: tuple[str, ...]) -> bool:
    """True when a claim is non-empty and not the trusted value (the trust rule keeps it)."""
    return any(
        claim and claim != value for (_col, value), claim in zip(trust, claims, strict=False)
    )


def _fit_row(row: dict[str, Any], props: dict[str, Any], meta: dict[str, Any]) -> None:
    """A long line's row within the service's limits: columns cut, Properties fitted,
    then ``meta`` (Properties.hal, which records the cuts) set as its last key."""
    cut_columns(row, meta)
    props = fit_properties(props, meta)
    fit_meta(meta)
    props[schema.PROP_HAL] = meta
    row["Properties"] = props


def _clamp_read_times(records: list[Record], read_time: str) -> None:
    """Keep a chunk's text rows in order with the wire rows written after them.

    A line without a timestamp of its own gets the time it was *read*, which is
    later than when the container wrote it: sorted by TimeGenerated, a
    ``print()`` would land after records logged after it. A record later in the
    same chunk (same stream, written later) bounds such a line's time, so each
    read-timed row takes the smallest time that follows it. Times are
    fixed-format ISO strings, so they compare as strings.
    """
    bound: str | None = None
    for rec in reversed(records):
        row = rec.row
        if type(row) is not dict:
            continue
        t = row.get("TimeGenerated")
        if t is read_time or t == read_time:
            if bound is not None and bound < t:
                row["TimeGenerated"] = bound
        elif isinstance(t, str) and (bound is None or t < bound):
            bound = t


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
