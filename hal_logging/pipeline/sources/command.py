"""Wrap a command (``hal-logging-forward -- CMD ...``): its stdout and stderr, live.

Replaces the seed's ``nohup docker run ... > docker_output.log 2>&1``: the two
streams stay apart (each row knows its stream), nothing waits for the end, and
the raw bytes can still be kept (``--raw-log``).

One reader thread per pipe puts chunks on one bounded queue. Bounded on
purpose: when the sink is slower than the command, the command blocks on its
pipe instead of the forwarder's memory growing (backpressure, as a shell pipe
would). Offsets are per stream (bytes read from that pipe), and the ``source``
is a fresh id per invocation, so record ids are unique per run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from hal_logging.pipeline.sources import IDLE, Chunk, Closed, Event, Opened

READ_BYTES = 64 * 1024
QUEUE_CHUNKS = 64
POLL = 0.1
#: After CMD exits, how long to wait for its pipes to close (a grandchild may hold them).
PIPE_GRACE = 2.0


class CommandError(Exception):
    """CMD could not be started; the message says why."""


class CommandSource:
    mode = "wrap"

    def __init__(self, argv: list[str], raw_log: str | None = None) -> None:
        self.argv = argv
        self.raw_log = raw_log
        self.invocation = uuid.uuid4().hex
        self.returncode: int | None = None
        self.started = 0.0
        self.seconds = 0.0
        self.total_bytes = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._q: queue.Queue[tuple[str, bytes | None]] = queue.Queue(QUEUE_CHUNKS)
        self._raw: BinaryIO | None = None
        self._raw_lock = threading.Lock()
        self.raw_error: str | None = None

    def source_id(self, stream: str) -> str:
        return f"{self.invocation}-{stream}"

    def start(self) -> None:
        if self.raw_log:
            try:
                self._raw = open(self.raw_log, "ab", buffering=0)
            except OSError as exc:
                raise CommandError(
                    f"cannot open --raw-log {self.raw_log}: {exc.strerror}; choose a writable path"
                ) from exc
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError as exc:
            raise CommandError(
                f"command not found: {self.argv[0]!r}; check the command after '--'"
            ) from exc
        except PermissionError as exc:
            raise CommandError(f"cannot run {self.argv[0]!r}: permission denied") from exc
        except OSError as exc:
            raise CommandError(f"cannot run {self.argv[0]!r}: {exc.strerror}") from exc
        self.started = time.monotonic()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(
                target=self._reader,
                args=(stream, pipe.fileno()),
                name=f"hal-read-{stream}",
                daemon=True,
            )
            t.start()

    def _reader(self, stream: str, fd: int) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, READ_BYTES)
                except OSError:
                    data = b""
                if not data:
                    break
                if self._raw is not None:
                    with self._raw_lock:
                        try:
                            self._raw.write(data)
                        except OSError as exc:
                            self.raw_error = f"--raw-log {self.raw_log}: {exc.strerror}"
                self._q.put((stream, data))
        finally:
            self._q.put((stream, None))

    def forward_signal(self, signum: int) -> None:
        """Pass SIGINT/SIGTERM on to CMD (it decides how to stop; we keep reading)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def events(self) -> Iterator[Event]:
        if self.proc is None:
            self.start()
        assert self.proc is not None
        open_streams = {"stdout", "stderr"}
        for stream in ("stdout", "stderr"):
            yield Opened(stream, stream, self.source_id(stream), 0)
        exited_at: float | None = None
        while open_streams:
            try:
                stream, data = self._q.get(timeout=POLL)
            except queue.Empty:
                if self.proc.poll() is not None:
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > PIPE_GRACE:
                        # Something else still holds the pipes open: stop reading them.
                        for s in sorted(open_streams):
                            yield Closed(s)
                        open_streams.clear()
                        break
                yield IDLE
                continue
            if data is None:
                open_streams.discard(stream)
                yield Closed(stream)
            else:
                self.total_bytes += len(data)
                yield Chunk(stream, data)
        self.returncode = self.proc.wait()
        self.seconds = time.monotonic() - self.started

    @property
    def exit_status(self) -> int:
        """CMD's status the shell way: 128+N when killed by signal N."""
        rc = self.returncode
        if rc is None:
            return 1
        return 128 - rc if rc < 0 else rc

    def describe_status(self) -> str:
        rc = self.returncode
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"killed by {name}"
        return f"exit status {rc}"

    def final_row_info(self) -> tuple[str, str, dict[str, Any], str]:
        """The final row: "command NAME finished ...", ids from this invocation."""
        name = os.path.basename(self.argv[0]) if self.argv else "?"
        return "command", name, {}, f"{self.invocation}-forward"

    def close(self) -> None:
        if self._raw is not None:
            with self._raw_lock, contextlib.suppress(OSError):
                self._raw.close()
            self._raw = None
