"""Append-only files of JSON lines that keep rows until they can be sent: one type for every writer.

Rows that could not be delivered must survive the process, in a form that
``hal-logging-forward --resend FILE`` reads back with every column intact:
one wire line per row, ``{"_hal":1,<the row's columns>}``. Four places keep
rows that way — wrap mode's spool, the Azure dead letter, the logging
handler's spill, and (without the marker) the JSON-lines sink's output
file — and they differ only in when the file is opened and whether each
write waits for the disk:

- ``sync=True`` (the default) flushes and ``fsync``\\ s before :meth:`LineFile.write`
  returns, so a checkpoint or an "it is kept" message never runs ahead of the
  bytes on disk. The logging handler's spill passes ``sync=False``: it writes
  from ``logger.info`` callers when the queue is full, where a wait on the disk
  per record would stall the application; it flushes to the OS instead.
- ``keep_open=False`` opens, appends and closes per write: for a file written
  rarely (the dead letter) that an operator may move away between writes.

A file is opened lazily, on the first write, unless :meth:`LineFile.open` is
called first to fail early; ``make_dirs=True`` creates its folder then (files
at a default place), otherwise a missing folder is the caller's error to report
(a path the operator gave).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from hal_logging import _json, schema

__all__ = ["LineFile", "WireFile", "read_lines", "wire_line"]

_EMPTY_WIRE_LINE = schema.WIRE_PREFIX[:-1] + b"}"


def wire_line(row_json: bytes) -> bytes:
    """A row's compact JSON object as a wire line (no newline): the marker goes first.

    ``row_json`` must not hold the marker already (rows in the pipeline never do).
    """
    if len(row_json) > 2:
        return schema.WIRE_PREFIX + row_json[1:]
    return _EMPTY_WIRE_LINE


class LineFile:
    """An append-only file of lines, or a stream (``stream=``, never closed here) treated alike.

    Thread-safe: writes of several threads do not interleave.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: bool = True,
        keep_open: bool = True,
        make_dirs: bool = False,
        stream: BinaryIO | None = None,
    ) -> None:
        self.path = Path(path)
        self.make_dirs = make_dirs
        self.sync = sync and stream is None
        self.keep_open = keep_open or stream is not None
        self._stream = stream
        self._fh: Any = stream
        self._lock = threading.Lock()

    def open(self) -> LineFile:
        """Open the file now (raises OSError), so that a bad path fails before any row is taken."""
        with self._lock:
            self._open()
        return self

    def _open(self) -> Any:
        if self._fh is None:
            if self.make_dirs:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")
        return self._fh

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines, newlines included): flushed, and on disk when ``sync``.

        Raises OSError (BrokenPipeError for a stream whose reader left); the caller says what it means.
        """
        with self._lock:
            fh = self._open()
            try:
                fh.write(data)
                fh.flush()
                if self.sync:
                    os.fsync(fh.fileno())
            finally:
                if not self.keep_open:
                    self._close()

    def append(self, lines: Iterable[bytes]) -> None:
        """Append lines given without their newline (one write, see :meth:`write`)."""
        self.write(b"".join(line + b"\n" for line in lines))

    def close(self) -> None:
        """Close the file (a later write opens it again); a given stream stays open. Never raises."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        fh, self._fh = self._fh, self._stream
        if fh is not None and fh is not self._stream:
            try:
                fh.close()
            except OSError:
                pass

    def read(self, offset: int = 0, limit: int = -1) -> tuple[list[bytes], int]:
        """See :func:`read_lines`."""
        return read_lines(self.path, offset, limit)


class WireFile(LineFile):
    """A :class:`LineFile` of wire lines: what ``hal-logging-forward --resend FILE`` sends again."""

    def append_rows(self, rows: Iterable[Any]) -> int:
        """Append rows (dicts, or ``orjson.Fragment``\\ s of a row's JSON) as wire lines; returns how many."""
        dumps = _json.dumps
        lines = [wire_line(dumps(row)) for row in rows]
        self.append(lines)
        return len(lines)


def read_lines(
    path: str | os.PathLike[str], offset: int, limit: int = -1
) -> tuple[list[bytes], int]:
    """Up to ``limit`` (-1: all) non-empty lines of ``path`` from byte ``offset``; and the offset after them.

    Lines come without their newline. A line being written (no newline yet) is
    read as it stands. A file that cannot be read gives what was read so far.
    """
    lines: list[bytes] = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while limit < 0 or len(lines) < limit:
                line = f.readline()
                if not line:
                    break
                offset += len(line)
                line = line.rstrip(b"\r\n")
                if line:
                    lines.append(line)
    except OSError:
        pass
    return lines, offset
