"""Python tracebacks printed raw: many lines -> one group -> one row at ERROR.

Shapes handled (CPython 3.8-3.13, checked against the real interpreter in the tests):

* ``Traceback (most recent call last):`` then indented frames (3.11+ adds caret
  lines ``^^^^``/``~~~^~~``), then the unindented exception line ``Type: message``
  or just ``Type`` (no message);
* chains: a blank line, ``The above exception was the direct cause of the
  following exception:`` or ``During handling of the above exception, another
  exception occurred:``, a blank line, and the next ``Traceback``;
* exception groups (3.11+): ``  + Exception Group Traceback (most recent call last):``
  and everything drawn with ``|``, ``+-+---`` (always indented);
* a ``SyntaxError`` printed without a Traceback line (starts with ``  File "...", line N``);
* the ``logger.exception``/``exc_info`` header: a text line at ERROR or CRITICAL just
  before the traceback on the same stream. The parser holds such a line briefly
  (until the next line or the deadline) to see whether a traceback follows.

A group ends at the first line that cannot belong to it (an unindented line that
is neither a chain marker nor, where one is due, an exception line shaped
``Type: message``/``Type`` - so ``INFO:agent:...`` after a traceback cut short
starts a row of its own), at the deadline (``poll``), or at
the caps (:data:`MAX_LINES` lines / :data:`MAX_BYTES` bytes: flushed as it is).
Memory stays bounded: the group keeps a head and a tail of the text and only
counts what lies between (the row cannot hold more than 64 KB anyway).

The row: Level ERROR (CRITICAL if the header says so), Message the header's
message or else the exception line, ``Properties.exception = {type, message,
stacktrace}`` (OpenTelemetry's names), format ``traceback``.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Final

MAX_LINES: Final = 2000
MAX_BYTES: Final = 1024 * 1024
HEAD_BYTES: Final = 40 * 1024
TAIL_BYTES: Final = 16 * 1024

TB_LINE: Final = "Traceback (most recent call last):"
GROUP_TB: Final = "Exception Group Traceback (most recent call last):"
CHAIN_MARKERS: Final = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
#: How Python prints the exception line: ``pkg.Type: message`` or just ``pkg.Type``.
#: The space after the colon matters: ``INFO:agent:text`` is a log line, not an exception.
_EXC_RE: Final = re.compile(r"([A-Za-z_][\w.]*)(?::(?: (.*))?)?", re.S)
_GROUP_EXC_RE: Final = re.compile(r"\s{0,4}\| (\S.*)")


def starts_traceback(text: str) -> bool:
    """True when ``text`` (escapes removed) opens a traceback."""
    if text.startswith("Traceback"):
        return text.startswith(TB_LINE)
    if "Exception Group Traceback" in text:
        return text.lstrip(" +|").startswith(GROUP_TB)
    return text.startswith('  File "') and ", line " in text


def split_exception(line: str) -> tuple[str, str]:
    """``"pkg.Error: message"`` -> (``pkg.Error``, ``message``); no colon -> empty message."""
    m = _EXC_RE.fullmatch(line.strip())
    if m:
        return m.group(1), m.group(2) or ""
    return "", line.strip()


class TracebackGroup:
    """The lines of one traceback being assembled (plus its optional header)."""

    __slots__ = (
        "_chain",
        "_exc_line",
        "_head",
        "_head_bytes",
        "_in_group",
        "_omitted",
        "_seen_exc",
        "_tail",
        "_tail_bytes",
        "end",
        "lines",
        "nbytes",
        "part",
        "received",
        "start",
    )

    def __init__(self, first: str | None, start: int, end: int, received: float) -> None:
        self.start = start
        self.end = end
        self.received = received  # time of the last line (the deadline counts from it)
        self._head: list[str] = []
        self._head_bytes = 0
        self._tail: deque[str] = deque()
        self._tail_bytes = 0
        self._omitted = 0
        self.lines = 0
        self.nbytes = 0
        self._seen_exc = False
        self._chain = False
        self._exc_line = ""
        self._in_group = False
        self.part = 1
        if first is not None:
            self._add(first)
            self._segment(first)

    def spawn(self) -> TracebackGroup:
        """An empty group continuing this one after the caps flushed it."""
        nxt = TracebackGroup(None, self.end, self.end, self.received)
        nxt._seen_exc, nxt._chain, nxt._in_group = self._seen_exc, self._chain, self._in_group
        nxt.part = self.part + 1
        return nxt

    # -- assembly --------------------------------------------------------------

    def _segment(self, text: str) -> None:
        """A new Traceback segment starts (first line or after a chain marker)."""
        self._seen_exc = False
        self._chain = False
        self._in_group = GROUP_TB in text
        if text.startswith('  File "'):
            self._in_group = False

    def _add(self, text: str) -> None:
        size = len(text) + 1
        self.lines += 1
        self.nbytes += size
        if self._head_bytes + size <= HEAD_BYTES and not self._tail:
            self._head.append(text)
            self._head_bytes += size
            return
        self._tail.append(text)
        self._tail_bytes += size
        while self._tail_bytes > TAIL_BYTES and len(self._tail) > 1:
            dropped = self._tail.popleft()
            self._tail_bytes -= len(dropped) + 1
            self._omitted += 1

    def accepts(self, text: str) -> bool:
        """Does this line continue the traceback? (Adds it when it does.)"""
        if self.lines >= MAX_LINES or self.nbytes >= MAX_BYTES:
            return False
        if not text.strip():
            self._add(text)
            return True
        c0 = text[0]
        if c0 in " \t":
            self._add(text)
            if GROUP_TB in text:
                self._segment(text)
            elif self._in_group and not self._seen_exc:
                m = _GROUP_EXC_RE.match(text)
                if m and not m.group(1).startswith(("File ", "Traceback", "Exception Group")):
                    self._exc_line = m.group(1)
                    self._seen_exc = True
            return True
        if text in CHAIN_MARKERS:
            self._add(text)
            self._chain = True
            return True
        if starts_traceback(text):
            if self._seen_exc and not self._chain:
                return False  # a second, separate traceback
            self._add(text)
            self._segment(text)
            return True
        if not self._seen_exc and _EXC_RE.fullmatch(text.rstrip()):
            self._add(text)
            self._exc_line = text
            self._seen_exc = True
            return True
        # Anything else (a log line after a traceback cut short, or after its end).
        return False

    def touch(self, end: int, received: float) -> None:
        self.end = end
        self.received = received

    # -- result ------------------------------------------------------------------

    def full(self) -> bool:
        return self.lines >= MAX_LINES or self.nbytes >= MAX_BYTES

    def stacktrace(self) -> str:
        lines = list(self._head)
        if self._omitted:
            lines.append(f"... [{self._omitted} lines omitted by hal-logging] ...")
        lines.extend(self._tail)
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines)

    def exception(self) -> dict[str, str]:
        """``{type, message, stacktrace}`` of the exception that ended the traceback."""
        line = self._exc_line
        if not line:
            # No exception line (cut by the deadline or the caps): the last visible line.
            tail = [t for t in (*self._head, *self._tail) if t.strip()]
            line = tail[-1].strip() if tail else ""
            etype, message = "", line
        else:
            etype, message = split_exception(line)
        return {"type": etype, "message": message, "stacktrace": self.stacktrace()}

    def summary(self) -> str:
        """The exception line, as a Message when there is no header."""
        return self._exc_line.strip() or (self._head[0] if self._head else "")

    def omitted_bytes(self) -> int:
        """Bytes of text not kept (between head and tail), for original_length."""
        return self.nbytes - self._head_bytes - self._tail_bytes if self._omitted else 0
