"""Sources: where bytes come from, as a stream of events the runner consumes.

Every source yields the same four events, so the runner has one loop for
finished files, followed files, a wrapped command and a followed container:

* :class:`Opened` a *generation* begins: a file (or a pipe) read from ``start``,
  with the ``source`` string record ids derive from. A truncated or rotated
  file starts a new generation.
* :class:`Chunk` bytes of a generation, in order.
* :class:`Closed` the generation ended (EOF, rotation, truncation, stop).
* :class:`Idle` nothing arrived within the poll interval: time for the runner's
  timers (flush interval, multi-line timeout).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from hal_logging.pipeline.checkpoint import CheckpointStore, FileIdentity, make_entry

#: Bytes per read. Large enough to amortise per-chunk work, small enough that a
#: batch (cut at chunk boundaries) stays near its limits.
CHUNK_BYTES = 128 * 1024


@dataclass(eq=False)
class FileInput:
    """An open file generation: what a checkpoint entry is made of."""

    path: str  # absolute path: the checkpoint key
    fd: int
    ident: FileIdentity
    store: CheckpointStore | None
    size_hint: int = 0
    #: the checkpoint was written under another trusted context: not resumed
    context_changed: bool = False

    def entry(self, source: str, offset: int) -> dict[str, Any]:
        return make_entry(self.path, self.ident, source, self.fd, offset)

    def close(self) -> None:
        try:
            import os

            os.close(self.fd)
        except OSError:
            pass


@dataclass(eq=False, slots=True)
class Opened:
    gen: str
    stream: str
    source: str
    start: int
    file: FileInput | None = None


@dataclass(eq=False, slots=True)
class Chunk:
    gen: str
    data: bytes
    #: The read time the parser uses (None: the runner takes the time it gets the
    #: chunk). Set by wrap mode's journal and by its replay, so both agree.
    time: float | None = None


@dataclass(eq=False, slots=True)
class Closed:
    gen: str
    #: False when reading stopped early (interrupted): a partial last line and
    #: open multi-line groups stay unread, for the next run to pick up.
    complete: bool = True
    #: When the last partial line was framed (None: now); see ``Chunk.time``.
    time: float | None = None


@dataclass(eq=False, slots=True)
class Idle:
    #: The timer tick's time (None: now); see ``Chunk.time``.
    time: float | None = None


Event = Opened | Chunk | Closed | Idle

IDLE = Idle()


class Source(Protocol):
    mode: str

    def events(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


@runtime_checkable
class LifetimeSource(Protocol):
    """A source that knows when the program writing it started: a wrapped command, a
    followed container, a journal's replay of a wrapped command. Wire-line times
    before that are the program's claims, not facts (the parser's ``not_before``)."""

    @property
    def lifetime_start(self) -> float | None: ...


@runtime_checkable
class ExitStatusSource(Protocol):
    """A source that ends with a program's exit status: wrap mode's command, a followed
    container. The runner writes the final row from it, the CLI takes its exit status.

    ``returncode`` is None until the program has ended (or when it never did while
    we read); ``exit_status`` is the shell's number (128+N for signal N).
    """

    returncode: int | None
    seconds: float

    @property
    def exit_status(self) -> int: ...

    @property
    def lifetime_start(self) -> float | None:
        """``time.time()`` when the program started (None until known): wire-line
        times before it are the program's claims, not facts."""
        ...

    def describe_status(self) -> str: ...

    @property
    def outcome(self) -> str | None:
        """How it ended, in the summary's words (``pipeline.outcome.COMMAND_*``)."""
        ...

    def final_row_info(self) -> tuple[str, str, dict[str, Any], str]:
        """(kind, name, extra Properties, record-id source) of the final row."""
        ...


class CountsBytes(Protocol):
    """A reader that counts the bytes it read."""

    total_bytes: int


def read_to_end(
    reader: CountsBytes, fd: int, pos: int, gen: str
) -> Generator[Chunk, None, tuple[int, float | None]]:
    """The chunks of ``fd`` from ``pos`` to its current end, each counted in
    ``reader.total_bytes``; returns the position reached and ``time.monotonic()``
    when the last chunk was read (None when there was nothing to read)."""
    read_at: float | None = None
    while True:
        data = os.pread(fd, CHUNK_BYTES, pos)
        if not data:
            return pos, read_at
        pos += len(data)
        reader.total_bytes += len(data)
        read_at = time.monotonic()
        yield Chunk(gen, data)


__all__ = [
    "CHUNK_BYTES",
    "IDLE",
    "Chunk",
    "Closed",
    "CountsBytes",
    "Event",
    "ExitStatusSource",
    "FileInput",
    "Idle",
    "LifetimeSource",
    "Opened",
    "Source",
    "read_to_end",
]
