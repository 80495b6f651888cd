"""Docker's json-file log of one container, with its rotated files, read in order.

With ``--log-opt max-size=...`` the daemon rotates ``<id>-json.log``: it
renames it to ``.1`` (``.1`` to ``.2``, ...; the oldest beyond ``max-file`` is
deleted) and starts a new file. A fast writer rotates several times between two
polls, so following only the live name (as ``--follow`` does) would skip the
files in between. This reader knows the scheme:

* it reads every file in age order, oldest first: ``.N`` ... ``.1``, then the
  live file, each as its own generation (record ids from that file's identity,
  so a file keeps its ids when it is renamed);
* at the end of a file that is no longer the live one, it takes a snapshot
  of the names (two passes that agree, so a rotation during the listing is
  not mistaken), finds its file by inode and continues with the next newer
  one; if its file is gone from the list (deleted past ``max-file``), the
  files in between may have been deleted unread too, and it says so;
* the checkpoint (one entry, keyed by the live path) names the file by device
  and inode, so a rerun finds it under its new name and resumes there.

Compressed rotation (``--log-opt compress=true``) turns rotated files into
``.gz`` copies with new inodes: files already read are not affected, a file
rotated before it was read to its end is read to its end through the open
descriptor, but files rotated and compressed before they were opened are not
read (the reader says so).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

from hal_logging.pipeline.checkpoint import CheckpointStore, identify, resume_point
from hal_logging.pipeline.sources import (
    CHUNK_BYTES,
    IDLE,
    Closed,
    Event,
    FileInput,
    Opened,
    read_to_end,
)

FAST_POLL = 0.1
SLOW_POLL = 0.25
RELAX_AFTER = 2.0
MAX_ROTATED = 10_000

Snapshot = list[tuple[str, int, int]]  # (name, dev, ino), oldest first


def _stat(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class JsonFileReader:
    """Reads a container's json-file log and its rotations; see the module docstring.

    ``done`` says the container has exited (the daemon has written every line
    by then): the live file is read to its end and the reader stops. ``stop``
    (a signal) stops it at once, leaving a partial line unread.
    """

    def __init__(
        self,
        path: str,
        store: CheckpointStore | None,
        stop: threading.Event,
        done: threading.Event,
        notify: Callable[[str], None],
    ) -> None:
        self.path = os.path.abspath(path)
        self.store = store
        self.stop = stop
        self.done = done
        self.notify = notify
        self.total_bytes = 0
        self.resumed = False
        #: Read to the end after the container exited (not stopped early by a signal).
        self.read_to_exit = False
        self._n = 0

    def snapshot(self) -> Snapshot:
        """The log's files, oldest first, as one consistent listing."""
        previous: Snapshot | None = None
        for _ in range(20):
            names: Snapshot = []
            for k in range(1, MAX_ROTATED):
                ident = _stat(f"{self.path}.{k}")
                if ident is None:
                    break
                names.append((f"{self.path}.{k}", *ident))
            live = _stat(self.path)
            names.reverse()
            if live is not None:
                names.append((self.path, *live))
            if names == previous:
                return names
            previous = names
        return previous or []

    def _after(self, dev: int, ino: int) -> Snapshot:
        """Files newer than (dev, ino); all of them if it is no longer listed."""
        snap = self.snapshot()
        for i, (_name, d, n) in enumerate(snap):
            if (d, n) == (dev, ino):
                return snap[i + 1 :]
        if snap and any(_stat(f"{self.path}.{k}.gz") for k in (1, 2)):
            self.notify(
                f"{self.path}: rotated and compressed before it was read: lines of the "
                "compressed files may be missing"
            )
        elif snap and snap[0][0] != self.path:
            self.notify(
                f"{self.path}: the log rotated past its max-file while being read: lines of "
                "deleted files may be missing"
            )
        return snap

    def events(self) -> Iterator[Event]:
        entry = self.store.get(self.path) if self.store is not None else None
        todo = self.snapshot()
        start: tuple[str, int, int] | None = None
        if entry:
            try:
                want = (int(entry["dev"]), int(entry["ino"]))
            except (KeyError, TypeError, ValueError):
                want = (-1, -1)
            for i, item in enumerate(todo):
                if (item[1], item[2]) == want:
                    start = item
                    todo = todo[i:]
                    break
        while not todo:  # no file yet (a container being created)
            if self.stop.is_set() or self.done.is_set():
                todo = self.snapshot()
                if not todo:
                    return
                break
            yield IDLE
            self.stop.wait(FAST_POLL)
            todo = self.snapshot()
        while todo:
            name, dev, ino = todo.pop(0)
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                # Renamed since the listing: look again from where we are.
                todo = self.snapshot()
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):
                os.close(fd)
                todo = self.snapshot()
                continue
            ended = yield from self._read(fd, name, entry if (name, dev, ino) == start else None)
            if ended:
                return
            todo = self._after(dev, ino)
        return

    def _read(
        self, fd: int, name: str, entry: dict[str, Any] | None
    ) -> Generator[Event, None, bool]:
        """One file as a generation; True when reading is over (exit or signal)."""
        # Wait until the first line is complete: it is part of the file's identity.
        ident = identify(fd, final=False)
        while ident is None:
            final = self.stop.is_set() or self.done.is_set() or name != self.path
            ident = identify(fd, final=final)
            if ident is None:
                yield IDLE
                self.stop.wait(FAST_POLL)
        pos, source = 0, ident.source
        resumed = resume_point(entry, fd) if entry else None
        if resumed is not None:
            pos, source = resumed
            self.resumed = True
        self._n += 1
        gen = f"{self._n}:{name}"
        yield Opened(gen, "unknown", source, pos, FileInput(self.path, fd, ident, self.store))
        last_data = time.monotonic()
        while True:
            pos, read_at = yield from read_to_end(self, fd, pos, gen)
            if read_at is not None:
                last_data = read_at
            st = _stat(self.path)
            rotated = st is not None and st != _ino_dev(fd)
            if rotated:
                # Renamed by the daemon: nothing more is written to it; read what is left.
                data = os.pread(fd, CHUNK_BYTES, pos)
                if data:
                    continue
                yield Closed(gen)
                return False
            if self.done.is_set():
                data = os.pread(fd, CHUNK_BYTES, pos)
                if data:
                    continue
                self.read_to_exit = True
                yield Closed(gen)
                return True
            if self.stop.is_set():
                yield Closed(gen, complete=False)
                return True
            yield IDLE
            quiet = time.monotonic() - last_data
            self.stop.wait(FAST_POLL if quiet < RELAX_AFTER else SLOW_POLL)


def _ino_dev(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino
