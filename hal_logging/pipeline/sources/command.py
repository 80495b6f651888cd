"""Wrap a command (``hal-logging-forward -- CMD ...``): its stdout and stderr, live.

Replaces the seed's ``nohup docker run ... > docker_output.log 2>&1``: the two
streams stay apart (each row knows its stream), nothing waits for the end, and
the raw bytes can still be kept (``--raw-log``, created with mode 0600: it holds
the output *unredacted*, secrets included; ``--raw-log-redacted`` keeps the same
bytes with secrets replaced, see :class:`RedactedLog`).

A command that cannot be started is not a usage error: like a shell, the
status is 127 when it is not found and 126 when it cannot be executed
(:attr:`CommandSource.spawn_error`), and the runner still writes the
forwarder's final row saying which, to a destination that works.

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
from collections.abc import Callable, Iterator
from typing import BinaryIO

from hal_logging.pipeline.outcome import (
    COMMAND_CANNOT_EXECUTE,
    COMMAND_EXITED,
    COMMAND_KILLED,
    COMMAND_NOT_FOUND,
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
)
from hal_logging.pipeline.sources import IDLE, Chunk, Closed, Event, Opened

READ_BYTES = 64 * 1024
QUEUE_CHUNKS = 64
POLL = 0.1
#: After CMD exits, how long to wait for its pipes to close (a grandchild may hold them).
PIPE_GRACE = 2.0


class CommandError(Exception):
    """A file the command's output goes to cannot be opened; the message says why."""


def open_private(path: str) -> BinaryIO:
    """Open ``path`` for appending, created with mode 0600 (it may hold secrets).

    An existing file readable by others is narrowed to 0600 too, when we own it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab", buffering=0)


class RedactedLog:
    """``--raw-log-redacted``: the command's output as it came, secrets replaced.

    Complete lines of each stream pass through ``redact`` (a redactor's
    ``redact_text``; the same values and shapes as the rows) and are appended in
    the order they complete; a line not finished when the stream closes is
    written at :meth:`close`. Bytes are decoded as UTF-8 with invalid bytes kept
    (surrogateescape), so only secrets change. Called from both pipe readers:
    one lock.
    """

    def __init__(self, path: str, redact: Callable[[str], str]) -> None:
        self.path = path
        self._redact = redact
        self._fh = open_private(path)
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _write(self, data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        self._fh.write(self._redact(text).encode("utf-8", "surrogateescape"))

    def feed(self, stream: str, data: bytes) -> None:
        with self._lock:
            buf = self._partial.pop(stream, b"") + data
            cut = buf.rfind(b"\n") + 1
            if cut:
                self._write(buf[:cut])
            if cut < len(buf):
                self._partial[stream] = buf[cut:]

    def close(self) -> None:
        with self._lock:
            for rest in self._partial.values():
                with contextlib.suppress(OSError):
                    self._write(rest + b"\n")
            self._partial.clear()
            with contextlib.suppress(OSError):
                self._fh.close()


class CommandSource:
    mode = "wrap"

    def __init__(
        self,
        argv: list[str],
        raw_log: str | None = None,
        redacted_log: RedactedLog | None = None,
    ) -> None:
        self.argv = argv
        self.raw_log = raw_log
        self.redacted_log = redacted_log
        self.invocation = uuid.uuid4().hex
        self.returncode: int | None = None
        #: Why the command could not be started (then returncode is 127 or 126).
        self.spawn_error: str | None = None
        self.spawn_outcome: str | None = None
        self.started = 0.0
        #: Wall-clock start: the command's lifetime begins here (the parser keeps
        #: wire-line times outside it as claims).
        self.lifetime_start: float | None = None
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
                self._raw = open_private(self.raw_log)
            except OSError as exc:
                raise CommandError(
                    f"cannot open --raw-log {self.raw_log}: {exc.strerror}; choose a writable path"
                ) from exc
        self.lifetime_start = time.time()
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            self._spawn_failed(
                EXIT_NOT_FOUND,
                COMMAND_NOT_FOUND,
                f"command not found: {self.argv[0]!r}; check the command after '--'",
            )
            return
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            self._spawn_failed(
                EXIT_CANNOT_EXECUTE,
                COMMAND_CANNOT_EXECUTE,
                f"cannot execute {self.argv[0]!r}: {exc.strerror or 'permission denied'}",
            )
            return
        except OSError as exc:  # ENOEXEC (no #! line, wrong architecture), E2BIG...
            self._spawn_failed(
                EXIT_CANNOT_EXECUTE,
                COMMAND_CANNOT_EXECUTE,
                f"cannot execute {self.argv[0]!r}: {exc.strerror or exc}",
            )
            return
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(
                target=self._reader,
                args=(stream, pipe.fileno()),
                name=f"hal-read-{stream}",
                daemon=True,
            )
            t.start()

    def _spawn_failed(self, status: int, outcome: str, message: str) -> None:
        self.returncode = status
        self.spawn_outcome = outcome
        self.spawn_error = message

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
                if self.redacted_log is not None:
                    try:
                        self.redacted_log.feed(stream, data)
                    except OSError as exc:
                        self.raw_error = (
                            f"--raw-log-redacted {self.redacted_log.path}: {exc.strerror}"
                        )
                self._q.put((stream, data))
        finally:
            self._q.put((stream, None))

    def forward_signal(self, signum: int) -> None:
        """Pass SIGINT/SIGTERM on to CMD (it decides how to stop; we keep reading)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def events(self) -> Iterator[Event]:
        if self.proc is None and self.spawn_error is None:
            self.start()
        if self.proc is None:  # could not be started: no output, the runner's row says why
            return
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

    @property
    def outcome(self) -> str | None:
        """``command_outcome`` of the summary: exited, killed, not-found, cannot-execute."""
        if self.spawn_outcome is not None:
            return self.spawn_outcome
        if self.returncode is None:
            return None
        return COMMAND_KILLED if self.returncode < 0 else COMMAND_EXITED

    def describe_status(self) -> str:
        if self.spawn_error is not None:
            return f"{self.spawn_error} (exit status {self.returncode})"
        rc = self.returncode
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"killed by {name}"
        return f"exit status {rc}"

    def close(self) -> None:
        if self.redacted_log is not None:
            self.redacted_log.close()
        if self._raw is not None:
            with self._raw_lock, contextlib.suppress(OSError):
                self._raw.close()
            self._raw = None
