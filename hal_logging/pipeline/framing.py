"""Framing: a byte stream, chunk by chunk, into :class:`~hal_logging.pipeline.model.Line` s.

Why a framer of our own instead of ``file.readline()``:

* **Offsets are exact.** Every byte fed belongs to exactly one line: ``Line.start``
  is where the line began (including any part a progress bar overwrote) and
  ``Line.end`` is past its terminator. Checkpoints and record ids are built on
  these offsets, so a rerun over the same bytes frames the same lines.
* **Bounded memory.** A line is never held whole: the framer keeps a *head* of
  at most ``max_line_bytes`` and only counts the rest (``Line.length`` is the
  real length). A 50 MB line costs 128 KB. A line that starts with ``{`` may
  keep up to ``max_json_bytes`` (1 MiB): a JSON object cut anywhere cannot be
  decoded, and a wire line whose Message and Properties are each at the 64 KB
  limit, escaped, is legitimately several hundred KB long.
* **Terminal output.** ``\\r`` not followed by ``\\n`` is a carriage return that
  rewrites the line (tqdm, pip, docker pull): only the final state is kept. A
  state that is blank (spaces, or only escape sequences such as ``ESC[K``) does
  not replace the last non-blank one, so ``bar 100%\\r\\x1b[K\\n`` keeps
  ``bar 100%``. ``\\r\\n`` is just a line end. A ``\\r`` that ends a chunk is
  undecided until the next byte (or :meth:`Framer.finish`) arrives.
* **The last line** without a newline is emitted by :meth:`Framer.finish`
  (its ``end`` is the end of the input).

The framer does not decode: bytes stay bytes until the parser decides what the
line is (the wire fast path hands them straight to ``orjson``).
"""

from __future__ import annotations

import operator
import re
from io import BytesIO
from itertools import accumulate, repeat

from hal_logging import schema
from hal_logging.pipeline.model import Line

# Escape sequences, as bytes, only used to decide whether a rewritten state is blank.
_ESCAPES_B = re.compile(
    rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[ -/]*[0-~]?"
)
_BLANK = b" \t\x0b\x0c\x00"
#: Head kept for a line that starts with "{" (see the module docstring).
MAX_JSON_BYTES = 1 << 20
#: A line without its terminator (the last byte), as a C-level call.
_CHOP = operator.itemgetter(slice(None, -1))
#: The same for a line ending ``\r\n`` (a pseudo-terminal's line end).
_CHOP2 = operator.itemgetter(slice(None, -2))


def _is_blank(seg: bytes | bytearray) -> bool:
    """True for a rewritten state with nothing visible in it."""
    if not seg.strip(_BLANK):
        return True
    if 0x1B in seg:
        return not _ESCAPES_B.sub(b"", seg).strip(_BLANK)
    return False


class Framer:
    """Split one stream's bytes into lines; see the module docstring.

    ``feed`` returns the lines completed by ``chunk``; ``finish`` returns the
    last, unterminated one (if any). ``start_offset`` is the source offset of
    the first byte fed (a resumed file starts at its checkpoint).
    """

    __slots__ = (
        "_line_start",
        "_max",
        "_max_json",
        "_offset",
        "_pending_cr",
        "_prev",
        "_prev_len",
        "_seg",
        "_seg_len",
        "stream",
    )

    def __init__(
        self,
        stream: str,
        start_offset: int = 0,
        max_line_bytes: int = schema.MAX_FIELD_BYTES * 2,
        max_json_bytes: int = MAX_JSON_BYTES,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.stream = stream
        self._max = max_line_bytes
        self._max_json = max(max_json_bytes, max_line_bytes)
        self._offset = start_offset  # source offset of the next byte fed
        self._line_start = start_offset
        self._seg = bytearray()  # head of the current state (after the last \r)
        self._seg_len = 0  # real length of the current state
        self._prev: bytes | None = None  # last non-blank state overwritten by \r
        self._prev_len = 0
        self._pending_cr = False  # the last byte fed was a \r not yet decided

    @property
    def offset(self) -> int:
        """Source offset just past the last byte fed."""
        return self._offset

    @property
    def pending_start(self) -> int | None:
        """Start offset of the line being assembled, or None when none is open."""
        if self._line_start < self._offset:
            return self._line_start
        return None

    # -- internals -----------------------------------------------------------

    def _append(self, chunk: bytes, a: int, b: int) -> None:
        if b <= a:
            return
        seg = self._seg
        cap = self._max_json if (seg[:1] or chunk[a : a + 1]) == b"{" else self._max
        room = cap - len(seg)
        if room > 0:
            self._seg += chunk[a : min(b, a + room)]
        self._seg_len += b - a

    def _rewrite(self) -> None:
        """A carriage return: the current state is overwritten by what follows."""
        if self._seg_len and not _is_blank(self._seg):
            self._prev = bytes(self._seg)
            self._prev_len = self._seg_len
        self._seg.clear()
        self._seg_len = 0

    def _emit(self, out: list[Line], end: int, now: float) -> None:
        if self._prev is not None and (not self._seg_len or _is_blank(self._seg)):
            data, real = self._prev, self._prev_len
        else:
            data, real = bytes(self._seg), self._seg_len
        out.append(
            Line(data, self.stream, self._line_start, end, now, real if real > len(data) else -1)
        )
        self._line_start = end
        self._seg.clear()
        self._seg_len = 0
        self._prev = None
        self._prev_len = 0

    # -- API -----------------------------------------------------------------

    def feed(self, chunk: bytes, now: float) -> list[Line]:
        """Lines completed by ``chunk`` (possibly none)."""
        out: list[Line] = []
        n = len(chunk)
        if not n:
            return out
        base = self._offset
        pos = 0
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == 0x0A:  # \r\n split across chunks: a plain line end
                self._emit(out, base + 1, now)
                pos = 1
            else:
                self._rewrite()
        find = chunk.find
        mx = self._max
        stream = self.stream
        first_cr = find(b"\r", pos)
        bulk = first_cr < 0  # no carriage return in the chunk
        # A pseudo-terminal (docker run -t) ends every line with \r\n: when every \r
        # and every \n of the chunk are such a line end, the bulk path applies too.
        # (Counted only when the first \r is one: a progress bar's costs nothing.)
        crlf = False
        if not bulk and chunk[first_cr + 1 : first_cr + 2] == b"\n":
            pairs = chunk.count(b"\r\n", pos)
            crlf = bulk = chunk.count(b"\r", pos) == pairs == chunk.count(b"\n", pos)
        while pos < n:
            if bulk and not self._seg_len and self._prev is None:
                # Fast path for a whole run of plain lines, split and made into Lines
                # in C. (Only when no line needs a cut; the rest goes line by line
                # below.) BytesIO.readlines finds line ends with memchr: faster than
                # bytes.split (a byte-by-byte loop), even with the cut of the
                # terminators after it (measured: the framer's CPU -25%).
                last = chunk.rfind(b"\n", pos)
                if last >= pos:
                    reader = BytesIO(chunk)  # (shares the chunk's buffer: no copy)
                    reader.seek(pos)
                    parts = reader.readlines()
                    if last != n - 1:
                        parts.pop()  # the unterminated tail: line by line below
                    if last - pos <= mx or max(map(len, parts)) <= mx + 1 + crlf:
                        # The first line may have begun before pos (after a lone \r
                        # that ended the previous chunk): its start is _line_start,
                        # every end is counted from pos.
                        starts = list(accumulate(map(len, parts), initial=base + pos))
                        starts[0] = self._line_start
                        out.extend(
                            map(
                                Line,
                                map(_CHOP2 if crlf else _CHOP, parts),
                                repeat(stream),
                                starts,
                                starts[1:],
                                repeat(now),
                            )
                        )
                        self._line_start = starts[-1]
                        pos = last + 1
                        if pos >= n:
                            break
                bulk = False
            nl = find(b"\n", pos)
            stop = n if nl < 0 else nl
            cr = find(b"\r", pos, stop)
            if nl >= 0 and (cr < 0 or cr == nl - 1) and not self._seg_len and self._prev is None:
                # Fast path: a whole line inside this chunk, no rewrites (a \r\n end is
                # no rewrite). (The line may have begun earlier with a lone \r: start
                # from _line_start.)
                stop_at = nl if cr < 0 else cr
                size = stop_at - pos
                end = base + nl + 1
                if size <= mx or (chunk[pos] == 0x7B and size <= self._max_json):  # "{"
                    out.append(Line(chunk[pos:stop_at], stream, self._line_start, end, now))
                else:
                    cap = self._max_json if chunk[pos] == 0x7B else mx
                    out.append(
                        Line(chunk[pos : pos + cap], stream, self._line_start, end, now, size)
                    )
                self._line_start = end
                pos = nl + 1
                continue
            while cr >= 0:
                self._append(chunk, pos, cr)
                pos = cr + 1
                if pos == stop:
                    if nl < 0:  # \r ends the chunk: undecided until the next byte
                        self._pending_cr = True
                    # else: \r\n, a plain line end
                    break
                self._rewrite()
                cr = find(b"\r", pos, stop)
            else:
                self._append(chunk, pos, stop)
            if nl < 0:
                break
            self._emit(out, base + nl + 1, now)
            pos = nl + 1
        self._offset = base + n
        return out

    def finish(self, now: float) -> list[Line]:
        """The last line when the input did not end with a newline."""
        out: list[Line] = []
        self._pending_cr = False
        if self._line_start < self._offset:
            self._emit(out, self._offset, now)
        return out
