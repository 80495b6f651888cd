"""The :class:`Parser`: lines of one source in, records out (see the package docstring).

The routing of each line: the wire fast path first (:mod:`.fastpath`), Docker's
formats unwrapped (:mod:`.docker`), then the careful path: a held group
continued (:mod:`.held`), JSON, a traceback, a text line, each made a record
(:mod:`.records`). Anything unforeseen becomes a row too (:meth:`Parser._fallback`).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Final

from hal_logging import schema
from hal_logging.pipeline.framing import MAX_JSON_BYTES
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing import docker
from hal_logging.pipeline.parsing.fastpath import _CTX_COLUMNS, _CTX_INDEX, _KEY, WireFastPath
from hal_logging.pipeline.parsing.held import _Held
from hal_logging.pipeline.parsing.ids import _OFFSET_HEX, _id_prefix
from hal_logging.pipeline.parsing.records import _BLANK_ROW, _LOGGERS, _MAX, _SMALL, _mark_cut
from hal_logging.pipeline.parsing.terminal import (
    NUL_REMOVED,
    clean,
    clean_noted,
    final_state,
    strip_escapes,
)
from hal_logging.pipeline.parsing.text import parse_text
from hal_logging.pipeline.parsing.timestamps import format_epoch
from hal_logging.pipeline.parsing.traceback import TracebackGroup, starts_traceback
from hal_logging.pipeline.parsing.trust import CLAIM_SKEW, trusted_items

__all__ = ["INPUT_FORMATS", "Parser"]

INPUT_FORMATS: Final = ("auto", "docker-json", "docker-timestamps", "raw")

_WIRE_PREFIX: Final = schema.WIRE_PREFIX
_WIRE_PREFIX_STR: Final = schema.WIRE_PREFIX.decode()
#: How an unwrapped docker line was wrapped (Line.via: the prefix of Properties.hal.format).
_VIA_TS: Final = "docker-timestamps+"
_VIA_JSON: Final = "docker-json+"
_HIGH: Final = frozenset(("ERROR", "CRITICAL"))
_NUL_PROBLEM: Final = (NUL_REMOVED,)
_DOCKER_WIRE: Final = "docker-json+wire"


class Parser(WireFastPath):
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
        #: whether the trusted values must be written into it, the claims it keeps
        #: (docs/contract.md §3), "YYYY-MM-DDTHH:MM:SS." of the last canonical time
        #: seen, and the last logger name that is not the VM side's.
        self._fast_state: tuple[tuple[str, ...] | None, bool, dict[str, str] | None, str, str] = (
            None,
            False,
            None,
            "",
            "",
        )
        self._claims_memo: dict[tuple[str, ...], tuple[bool, dict[str, str] | None]] = {}
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
                    record = self._wire(data, line, len(data))
                    if record is not None:
                        return [record]
            return self._route(line)
        except Exception as exc:  # defined behaviour for anything unforeseen: a row
            return self._fallback(line, exc)

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
                unwrapped = Line(
                    b"", self.stream, line.start, line.end, line.received, time=when, via=_VIA_TS
                )
                return self._payload(rest, unwrapped, cut)
        return self._payload(data, line, cut)

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
            if (
                log.startswith(_WIRE_PREFIX_STR)
                and not self._held
                and self._skip_from is None
                and len(log) * 3 <= _SMALL  # (_payload's size of a str: no cut to make)
            ):
                out = self._docker_wire(line, log, stream)
                if out:
                    return out
            unwrapped = Line(
                b"", stream, line.start, line.end, line.received, time=rec.time, via=_VIA_JSON
            )
            return self._payload(log, unwrapped, -1)
        partial.add(log)  # the last piece: the line is whole
        partial.end, partial.received = line.end, line.received
        partial.time = partial.time or rec.time
        return self._flush_partial(stream)

    def _docker_wire(self, line: Line, log: str, stream: str) -> list[Record]:
        """A wire line unwrapped from a json-file record, through the wire fast lane
        (the rows :meth:`_payload` gives; measured: a json-file log of wire lines
        from 1.89x to ~1.5x the CPU of the same lines as a plain file), or nothing.

        Its records carry no ``raw``: the line's strings are escaped in the file
        (and Docker escapes ``<``, ``>``, ``&`` too), so no source bytes vouch for them.
        """
        try:
            data = log.encode()
        except UnicodeEncodeError:  # a lone surrogate: the careful path replaces it
            return []
        if self._bounded:  # (the careful path bounds its own times)
            self._bound_hi(line.received)
        prefix = self._prefixes.get(stream)
        if prefix is None:
            prefix = self._prefixes[stream] = _id_prefix(self.source, stream)
        out: list[Record] = []
        one = Line(data, stream, line.start, line.end, line.received)
        self._wire_run(
            [one], 0, [prefix + _OFFSET_HEX % line.start], out, None, stream, _DOCKER_WIRE
        )
        for rec in out:
            rec.raw = None
        return out

    def _flush_partial(self, stream: str) -> list[Record]:
        """The line held in pieces on ``stream``, as it is (whole, or cut short)."""
        partial = self._partials.pop(stream)
        cut = partial.length if partial.length > partial.kept else -1
        p = partial
        whole = Line(b"", stream, p.start, p.end, p.received, time=p.time, via=_VIA_JSON)
        return self._payload(p.text(), whole, cut)

    def _payload(self, payload: bytes | str, line: Line, cut: int) -> list[Record]:
        """One logical line (bytes from the framer, or str from a docker record).

        Where it came from travels as its :class:`Line` (stream, offsets, read
        time, and for an unwrapped docker line its time and ``via``) to
        :meth:`_wire`, :meth:`_json` and :meth:`_text_record`: the framer's own
        Line for a plain line, so nothing is built per line on that path (a
        NamedTuple per line cost about 1 µs here, 4-8% of a text line's parse);
        an unwrapped docker record makes one.
        """
        stream, start, end, received = line.stream, line.start, line.end, line.received
        time_hint, prefix = line.time, line.via
        out: list[Record] = []
        if isinstance(payload, bytes):
            if cut < 0 and payload.startswith(_WIRE_PREFIX):
                record = self._wire(payload, line, len(payload))
                if record is not None:
                    out.extend(self._close(stream))
                    out.append(record)
                    return out
            text, noted = clean_noted(payload)
            problems: Sequence[str] | None = noted
            size = len(payload)
        else:
            if cut < 0 and payload.startswith(_WIRE_PREFIX_STR):
                record = self._wire(payload, line, len(payload) * 3)
                if record is not None:
                    out.extend(self._close(stream))
                    out.append(record)
                    return out
            problems = _NUL_PROBLEM if "\x00" in payload else None
            text = strip_escapes(final_state(payload)).replace("\x00", "").rstrip()
            size = len(payload) * 3

        held = self._held.get(stream)
        if held is not None and self._continue_held(held, stream, text, end, received, out):
            return out

        if not text.strip():
            if self._skip_from is None:
                self._skip_from = start
            return out
        if cut < 0 and text[0] == "{" and text[-1] == "}":
            record = self._json(text, line, size, problems)
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
        record = self._text_record(info, line, size, cut, problems)
        if cut < 0 and text.isascii() and len(text) == len(payload) and type(payload) is bytes:
            # Nothing was decoded, removed (escapes, NUL) or stripped: the row's
            # strings are slices of the line (see Record.raw).
            record.raw = payload
        out.append(record)
        return out

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
