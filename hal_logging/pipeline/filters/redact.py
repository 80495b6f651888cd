"""Secret redaction as the pipeline's first filter, so no secret leaves the VM in
any mode or sink.

What is replaced, and how a row is checked, is :mod:`hal_logging.redaction`'s
(the :class:`~hal_logging.redaction.Redactor`, shared with the container-side
OpenTelemetry handler). This is the pipeline's face of it: the filter step, the
pre-scan of whole source chunks (one Aho-Corasick pass per chunk instead of one
per row, for records whose strings are verbatim in their source bytes), and a
private-key block printed line by line, followed per stream.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add, attrgetter
from typing import Final

import orjson

from hal_logging.pipeline.model import Filter, Record
from hal_logging.redaction.patterns import looks_secret, marker
from hal_logging.redaction.redactor import TEXT_COLUMNS, Redactor

# ``looks_secret`` re-exported: the container source finds it here.
__all__ = ["ChunkScan", "RedactFilter", "Redactor", "looks_secret"]


@dataclass(slots=True)
class ChunkScan:
    """Trigger matches in one chunk of source bytes (see :meth:`RedactFilter.scan_chunk`)."""

    key: tuple[str, str]  # (source, stream)
    base: int  # source offset of the chunk
    end: int  # ... of its end
    spans: list[tuple[int, int]]  # source (start, end) of matches, by start


@dataclass(slots=True)
class _Scan:
    """Trigger matches in the last two chunks of one (source, stream)."""

    covered_from: int  # source offset from which every match is in ``starts``
    covered_to: int  # ... up to here (exclusive)
    starts: list[int]  # match starts, sorted
    max_ends: list[int]  # max_ends[i]: the furthest end of matches 0..i
    chunk: ChunkScan  # the latest chunk's scan

    @classmethod
    def of(cls, covered_from: int, spans: list[tuple[int, int]], chunk: ChunkScan) -> _Scan:
        starts: list[int] = []
        max_ends: list[int] = []
        furthest = -1
        for a, b in spans:
            starts.append(a)
            furthest = max(furthest, b)
            max_ends.append(furthest)
        return cls(covered_from, chunk.end, starts, max_ends, chunk)

    def clean(self, start: int, end: int) -> bool | None:
        """No match touches ``[start, end)``: True; one does: False; not covered: None."""
        if start < self.covered_from or end > self.covered_to:
            return None
        i = bisect_left(self.starts, end)  # matches 0..i-1 start before ``end``
        return i == 0 or self.max_ends[i - 1] <= start


#: Fewer rows unvouched than this: checked one by one (a list scan would not pay).
_QUIET_MIN_ROWS: Final = 8
_get_raw: Final = attrgetter("raw")
_get_source: Final = attrgetter("source")
_get_stream: Final = attrgetter("stream")
_get_start: Final = attrgetter("start")
_get_end: Final = attrgetter("end")

_PEM_BEGIN: Final = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_END: Final = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_BODY: Final = re.compile(r"^\s*(?:[A-Za-z0-9+/=]*|[A-Za-z\-]+: .*)\s*$")
#: A PEM block longer than this many rows is not one (stops the line-by-line state).
_PEM_MAX_ROWS: Final = 200


class RedactFilter(Filter):
    """The redaction step of the chain (see the module docstring).

    Stats: ``redacted:<kind>`` per replaced secret and ``rows_redacted``. A
    private-key block printed line by line (each line its own record) is
    followed per source stream: after a BEGIN line without its END, the
    base64 lines that follow are replaced whole, up to the END line.
    """

    name = "redact"

    def __init__(self, redactor: Redactor, trusted: Mapping[str, str] | None = None) -> None:
        super().__init__()
        redactor.counts = self.stats
        redactor.prefix = "redacted:"
        self.redactor = redactor
        #: Columns whose value the VM side set: never rewritten (they are not the container's).
        skip = {"TimeGenerated", "Level", *(trusted or {}).keys()}
        self._columns = tuple(c for c in TEXT_COLUMNS if c not in skip)
        #: (source, stream) -> rows seen inside an open private-key block.
        self._pem_open: dict[tuple[str, str], int] = {}
        #: Plain lines about the setup (unset or too-short variables), for the forwarder to print.
        self.notes: list[str] = []
        self._found = redactor._found
        self._scans: dict[tuple[str, str], _Scan] = {}
        #: (source, stream) -> (end offset, lower-cased last bytes) of the last chunk scanned.
        self._tails: dict[tuple[str, str], tuple[int, bytes]] = {}

    def prescan(self, source: str, stream: str, data: bytes, base: int) -> None:
        """Find every trigger in a chunk of source bytes at once (``base``: its offset).

        Called by the runner before the chunk is framed and parsed. A record whose
        ``raw`` bytes are vouched for (``Record.raw``) and whose source span no
        match touches needs no look at all: one scan per chunk instead of one
        per row (the scanner also releases the GIL per call, which costs the
        reading thread a wait whenever the delivery thread wants it). The spans
        of the last two chunks are covered; a record that began earlier falls
        back to its own check. Same as :meth:`scan_chunk` then :meth:`use_scan`.
        """
        scan = self.scan_chunk(source, stream, data, base)
        if scan is not None:
            self.use_scan(scan)

    def scan_chunk(self, source: str, stream: str, data: bytes, base: int) -> ChunkScan | None:
        """The trigger matches of a chunk, for :meth:`use_scan` (None: no fast scanner).

        Chunks of one (source, stream) must be scanned in order. A match
        across the boundary with the previous chunk is found by rescanning that
        chunk's last ``max_trigger - 1`` bytes. (Tried: scanning on a read-ahead
        thread, since the scan releases the GIL; on two shared cores the extra
        thread cost more than it saved.)
        """
        spans_of = self.redactor._spans
        if spans_of is None or not data:
            return None
        key = (source, stream)
        low = data.lower()
        end = base + len(data)
        prev = self._tails.get(key)
        if prev is not None and prev[0] == base:  # contiguous with the last chunk
            low = prev[1] + low
        first = end - len(low)
        keep = self.redactor.max_trigger - 1
        self._tails[key] = (end, low[-keep:] if keep else b"")
        return ChunkScan(key, base, end, [(first + a, first + b) for a, b in spans_of(low)])

    def use_scan(self, scan: ChunkScan) -> None:
        """Make a chunk's matches current (before its records are processed)."""
        cur = self._scans.get(scan.key)
        if cur is None or cur.covered_to != scan.base:  # first chunk, or a new generation
            self._scans[scan.key] = _Scan.of(scan.base, scan.spans, scan)
            return
        prev = cur.chunk
        spans = sorted(prev.spans + scan.spans) if prev.spans else scan.spans
        self._scans[scan.key] = _Scan.of(prev.base, spans, scan)

    def process_batch(self, records: list[Record]) -> list[Record]:
        """The chain's hot loop: records vouched clean by :meth:`prescan` pass untouched."""
        if self._all_clean(records):
            return records
        quiet = self._quiet_rows(records)
        out: list[Record] = []
        append = out.append
        process = self.process
        scans = self._scans
        for i, r in enumerate(records):
            if not self._pem_open:
                if r.raw is not None:
                    scan = scans.get((r.source, r.stream))
                    if scan is not None and scan.clean(r.start, r.end):
                        append(r)  # no trigger anywhere in the record's source bytes
                        continue
                elif quiet is not None and quiet[i]:
                    append(r)  # no trigger anywhere in the row's JSON
                    continue
            out.extend(process(r))
        return out

    def _quiet_rows(self, records: list[Record]) -> list[bool] | None:
        """For each record, True when no trigger is in its row's JSON (None: not known).

        For rows no source bytes vouch for (the careful path: claims kept,
        escapes, docker records), one scan of the list's JSON instead of
        :meth:`Redactor.redact_row`'s two checks per row (measured: ~7 -> ~1.5 us
        a row on agent output). The same answer: each string is in the JSON
        as it is, or JSON-escaped where a known value's JSON spelling is a
        trigger too; Properties is checked as JSON anyway. The one trigger with
        a quote (``token"``, for key names) may match a string column's raw
        text and not its JSON, but only announces keys: in a column it
        replaces nothing. Likewise a non-str column is never rewritten (only
        its str() is read). More text than the check reads (keys, the VM
        side's columns) can only make a row looked at, never skipped wrongly.
        """
        spans_of = self.redactor._spans
        if spans_of is None or sum(r.raw is None for r in records) < _QUIET_MIN_ROWS:
            return None
        rows = [r.row for r in records]
        try:
            spans = spans_of(orjson.dumps(rows).lower())
            if not spans:
                return [True] * len(rows)
            sizes = list(map(len, map(orjson.dumps, rows)))
        except TypeError:  # a value orjson refuses (orjson.JSONEncodeError too)
            return None
        # orjson.dumps(list) is "[" + the rows' own JSON joined by "," + "]".
        starts = list(accumulate(map(add, sizes, repeat(1)), initial=1))
        quiet = [True] * len(rows)
        for a, b in spans:
            first = max(0, bisect_right(starts, a) - 1)
            for i in range(first, min(len(rows), bisect_left(starts, b))):
                quiet[i] = False
        return quiet

    def _all_clean(self, records: list[Record]) -> bool:
        """The usual chunk, over the list with C-level calls: one (source, stream), every
        record vouched for (``raw``), and no trigger anywhere in the covered span.

        What the loop of :meth:`process_batch` would find record by record
        (~200 ns a record instead of ~450 on agent output).
        """
        if self._pem_open or not records:
            return False
        first = records[0]
        scan = self._scans.get((first.source, first.stream))
        if scan is None or scan.starts:  # no scan, or a match to place: record by record
            return False
        return (
            None not in map(_get_raw, records)
            and len(set(map(_get_source, records))) == 1
            and len(set(map(_get_stream, records))) == 1
            and scan.covered_from <= min(map(_get_start, records))
            and max(map(_get_end, records)) <= scan.covered_to
        )

    def process(self, record: Record) -> Iterable[Record]:
        raw = record.raw
        if raw is not None and not self._pem_open and not self._found(raw.lower()):
            # Every string of the row is verbatim in ``raw`` and no trigger is in
            # it (a PEM BEGIN line would hit "private"): nothing to replace.
            return (record,)
        row = record.row
        before = self.redactor.hits
        message = row.get("Message")
        if isinstance(message, str):
            if self._pem_open:
                self._pem_line(record, message)
            if "PRIVATE KEY" in message:
                self._pem_start(record, message)
        self.redactor.redact_row(row, columns=self._columns)
        if self.redactor.hits != before:
            self.count("rows_redacted")
        return (record,)

    def _pem_line(self, record: Record, message: str) -> None:
        key = (record.source, record.stream)
        inside = self._pem_open.get(key)
        if inside is None:
            return
        end = _PEM_END.search(message)
        if end is not None:
            del self._pem_open[key]
            if not _PEM_BEGIN.search(message, 0, end.start()):
                record.row["Message"] = marker("private_key") + message[end.end() :]
                self.redactor.count("private_key")
        elif inside < _PEM_MAX_ROWS and _PEM_BODY.match(message):
            self._pem_open[key] = inside + 1
            record.row["Message"] = marker("private_key")
            self.redactor.count("private_key")
        else:
            del self._pem_open[key]

    def _pem_start(self, record: Record, message: str) -> None:
        begins = list(_PEM_BEGIN.finditer(message))
        last = begins[-1] if begins else None
        if last is not None and not _PEM_END.search(message, last.end()):
            self._pem_open[(record.source, record.stream)] = 0
