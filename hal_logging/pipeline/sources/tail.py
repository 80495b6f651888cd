"""Follow a growing file (``--follow FILE``), the seed's Option A.

Polling, not inotify: one ``stat`` per interval costs nothing measurable, works
on every filesystem (NFS, overlay, bind mounts) and keeps the logic small.
The interval is short while data flows and relaxes after a quiet spell, so a
new line is read within ~0.25 s and an idle forwarder uses ~0 CPU.

What it survives:

* **copytruncate** (size drops below what was read): the same inode is read
  again from 0 as a new generation, with a fresh ``source`` so its record ids
  never collide with the previous contents'.
* **rotation** (the path now names another inode): the old file is drained to
  EOF first (a writer may still append to it), then the new file is read from
  its start.
* **not there yet**: waits for the file to appear.

It stops, after reading what is there, on the ``stop`` event (SIGTERM/SIGINT),
when ``--until-pid`` exits, or after ``--idle-exit`` seconds without new bytes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from hal_logging.pipeline.checkpoint import CheckpointStore
from hal_logging.pipeline.sources import (
    CHUNK_BYTES,
    IDLE,
    Chunk,
    Closed,
    Event,
    Opened,
    read_to_end,
)
from hal_logging.pipeline.sources.file import open_input

FAST_POLL = 0.1
SLOW_POLL = 0.25
#: Seconds without data after which polling relaxes to SLOW_POLL.
RELAX_AFTER = 2.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TailSource:
    mode = "follow"

    def __init__(
        self,
        path: str,
        store: CheckpointStore | None,
        stop: threading.Event,
        *,
        stream: str = "unknown",
        until_pid: int | None = None,
        idle_exit: float | None = None,
        notify: Callable[[str], None] | None = None,
        context_tag: str = "",
    ) -> None:
        self.path = path
        self.context_tag = context_tag
        #: path -> offset a checkpoint let this run start from (the summary's ``resumed``)
        self.resumed: dict[str, int] = {}
        self.store = store
        self.stop = stop
        self.stream = stream
        self.until_pid = until_pid
        self.idle_exit = idle_exit
        self.notify = notify or (lambda _msg: None)
        self.stop_reason = ""
        self.total_bytes = 0
        self._gen_n = 0

    def _should_stop(self, last_data: float) -> bool:
        if self.stop.is_set():
            self.stop_reason = self.stop_reason or "signal"
            return True
        if self.until_pid is not None and not pid_alive(self.until_pid):
            self.stop_reason = f"process {self.until_pid} exited"
            return True
        if self.idle_exit is not None and time.monotonic() - last_data >= self.idle_exit:
            self.stop_reason = f"no new bytes for {self.idle_exit:g}s"
            return True
        return False

    def _wait(self, last_data: float) -> None:
        quiet = time.monotonic() - last_data
        self.stop.wait(FAST_POLL if quiet < RELAX_AFTER else SLOW_POLL)

    def events(self) -> Iterator[Event]:
        last_data = time.monotonic()
        fd = -1
        announced = False
        # Wait for the file to exist.
        while fd < 0:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                if not announced:
                    self.notify(f"waiting for {self.path} to appear")
                    announced = True
                if self._should_stop(last_data):
                    return
                yield IDLE
                self._wait(last_data)
        yield from self._follow(fd, last_data)

    def _open_generation(
        self, fd: int, last_data: float, *, fresh: bool
    ) -> Iterator[Event | tuple[str, int]]:
        """Wait until the file's first line is complete, then announce the generation."""
        while True:
            stopping = self._should_stop(last_data)
            opened = open_input(
                self.path,
                fd,
                None if fresh else self.store,
                final=stopping,
                context_tag=self.context_tag,
            )
            if opened is not None:
                break
            yield IDLE
            self._wait(last_data)
        inp, pos, source = opened
        if fresh:
            inp.store = self.store
            source = f"{source}~{uuid.uuid4().hex[:8]}"
        elif pos:
            self.resumed[self.path] = pos
        self._gen_n += 1
        gen = f"{self._gen_n}:{self.path}"
        yield Opened(gen, self.stream, source, pos, inp)
        yield (gen, pos)

    def _follow(self, fd: int, last_data: float) -> Iterator[Event]:
        fresh = False
        while True:
            gen = ""
            pos = 0
            for ev in self._open_generation(fd, last_data, fresh=fresh):
                if isinstance(ev, tuple):
                    gen, pos = ev
                else:
                    yield ev
            if not gen:  # pragma: no cover - _open_generation always ends with the tuple
                return
            next_fd: int | None = None
            while True:
                pos, read_at = yield from read_to_end(self, fd, pos, gen)
                if read_at is not None:
                    last_data = read_at
                # At EOF: decide whether to stop, reopen or wait.
                if self._should_stop(last_data):
                    # One last read: the writer may have appended since.
                    data = os.pread(fd, CHUNK_BYTES, pos)
                    if data:
                        pos += len(data)
                        self.total_bytes += len(data)
                        yield Chunk(gen, data)
                        continue
                    yield Closed(gen)
                    return
                try:
                    size = os.fstat(fd).st_size
                except OSError:  # pragma: no cover - fd stays valid
                    size = pos
                if size < pos:
                    self.notify(f"{self.path} was truncated: reading it again from its start")
                    next_fd = os.dup(fd)  # the old generation's fd is closed by the runner
                    fresh = True
                    yield Closed(gen)
                    break
                try:
                    st = os.stat(self.path)
                except FileNotFoundError:
                    st = None
                if st is not None and (st.st_ino, st.st_dev) != _ino_dev(fd):
                    try:
                        new_fd = os.open(self.path, os.O_RDONLY)
                    except FileNotFoundError:
                        new_fd = -1
                    if new_fd >= 0:
                        # Drain the old file once more, then switch.
                        data = os.pread(fd, CHUNK_BYTES, pos)
                        if data:
                            os.close(new_fd)
                            pos += len(data)
                            self.total_bytes += len(data)
                            yield Chunk(gen, data)
                            continue
                        self.notify(f"{self.path} was rotated: reading the new file from its start")
                        yield Closed(gen)
                        fresh = False
                        next_fd = new_fd
                        break
                yield IDLE
                self._wait(last_data)
            fd = next_fd if next_fd is not None else fd

    def close(self) -> None:
        pass


def _ino_dev(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_ino, st.st_dev
