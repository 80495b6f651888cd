"""The logging handler's spill file: a backlog of wire lines, sent again once the service answers.

Rows the handler could not send (the queue full, the service down, a batch the
engine gave up on, what ``close()`` had no time for) are appended here as wire
lines (``{"_hal":1,...}``), never dropped. The file is a backlog, not a grave:
once the service accepts rows again the sender renames it to
``<name>.resending.jsonl`` and sends it chunk by chunk between batches of new
rows, so new spills go to a fresh file meanwhile. What is still unsent at exit
is put back at the head of the spill file, oldest first, for
``hal-logging-forward --resend SPILL_FILE``.

Writes are flushed to the OS but not fsynced: they happen on ``logger.info``
callers' threads when the queue is full, where waiting on the disk per
record would stall the application (see :mod:`hal_logging.delivery.wirefile`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hal_logging.delivery.wirefile import WireFile, read_lines

__all__ = ["Spill", "default_spill_path"]


def default_spill_path(stream: str) -> Path:
    """``$HAL_LOGGING_SPILL_DIR`` or the XDG state folder, one file per stream, start time and process."""
    base = os.environ.get("HAL_LOGGING_SPILL_DIR")
    if base:
        folder = Path(base)
    else:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
        folder = Path(state) / "hal-logging" / "spill"
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return folder / f"{stream}-{stamp}-{os.getpid()}.jsonl"


class Spill:
    """The spill file at ``path`` and its backlog being resent (``<stem>.resending.jsonl``).

    :meth:`write` may be called from any thread; the backlog methods
    (:meth:`next_chunk`, :meth:`advance`, :meth:`park`) from the sender thread only.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.resend_path = path.with_name(path.stem + ".resending.jsonl")
        self._file = WireFile(path, sync=False, make_dirs=True)
        self.lock = threading.Lock()
        self.pending = 0  # rows in the spill file since it was last rotated
        self.resending: Path | None = None  # the backlog file being sent, if any
        self._offset = 0  # of the next row of ``resending`` to send

    def write(self, lines: Sequence[bytes], counted: Callable[[int], None]) -> None:
        """Append wire lines; ``counted(n)`` runs under the lock once they are written.

        Raises OSError (the caller counts the rows lost and says so).
        """
        with self.lock:
            self._file.append(lines)
            self.pending += len(lines)
            counted(len(lines))

    def close_file(self) -> None:
        """Close the handle (reopened by the next write); caller holds :attr:`lock`."""
        self._file.close()

    def has_backlog(self) -> bool:
        return self.resending is not None or self.pending > 0

    def next_chunk(self, limit: int) -> tuple[list[bytes], int] | None:
        """The next rows of the backlog and the offset after them; rotates the spill file first.

        ``([], offset)`` when the backlog is done (its file removed); None when
        there is nothing to send. Raises OSError when the spill file could not
        be rotated (it is left as it is).
        """
        if self.resending is None:
            with self.lock:
                if self.pending == 0:
                    return None
                self.close_file()
                os.replace(self.path, self.resend_path)
                self.pending = 0
            self.resending = self.resend_path
            self._offset = 0
        lines, end = read_lines(self.resending, self._offset, limit)
        if not lines:
            with contextlib.suppress(OSError):
                self.resending.unlink()
            self.resending = None
        return lines, end

    def advance(self, end: int) -> None:
        """The rows up to ``end`` were sent."""
        self._offset = end

    def park(self) -> str | None:
        """At exit: put the unsent rest of the backlog back at the head of the spill file.

        Returns what went wrong, if anything (both files are then kept).
        """
        resend = self.resending
        if resend is None:
            return None
        error = None
        with self.lock:
            self.close_file()
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                with open(tmp, "wb") as out:
                    with open(resend, "rb") as src:
                        src.seek(self._offset)
                        shutil.copyfileobj(src, out)
                    if self.path.exists():
                        with open(self.path, "rb") as src:
                            shutil.copyfileobj(src, out)
                os.replace(tmp, self.path)
                resend.unlink()
            except OSError as err:
                error = f"could not merge {resend} into {self.path} ({err}); both kept"
            self.resending = None
        return error
