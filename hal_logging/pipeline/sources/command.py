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

Stopping is bounded. CMD runs in its own session (process group), so a
terminal's Ctrl-C reaches it once, through the forwarder, and escalation can
reach everything CMD started. On the first SIGINT/SIGTERM the forwarder passes
the signal on to CMD's process group and keeps reading; if CMD has not exited
``stop_timeout`` seconds later (``--stop-timeout``, default 10 like ``docker
stop``), or at a second signal, it escalates: a wrapped ``docker run`` has its
container stopped through the daemon (the id comes from ``--cidfile``, see
:mod:`~hal_logging.pipeline.sources.docker_run`), then CMD's process group is
SIGKILLed if still alive. A container PID 1 without a SIGTERM handler ignores
SIGTERM, so without this the forwarder (and the container) would wait forever.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from hal_logging.pipeline.outcome import (
    COMMAND_CANNOT_EXECUTE,
    COMMAND_EXITED,
    COMMAND_KILLED,
    COMMAND_NOT_FOUND,
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
)
from hal_logging.pipeline.sources import CHUNK_BYTES, IDLE, Chunk, Closed, Event, Idle, Opened
from hal_logging.pipeline.sources.docker_run import (
    INVOCATION_LABEL,
    container_state,
    container_status,
    find_labelled,
    parse_docker_run,
    read_cid,
    remove_container,
    stop_container,
)

READ_BYTES = 64 * 1024
QUEUE_CHUNKS = 64
POLL = 0.1
#: After CMD exits, how long to wait for its pipes to close (a grandchild may hold them).
PIPE_GRACE = 2.0
#: Chunks already waiting are joined up to this size (see ``events``).
COALESCE_BYTES = CHUNK_BYTES
#: Default of ``--stop-timeout``: seconds from the signal passed on to escalation.
STOP_TIMEOUT = 10.0
#: After the container was stopped through the daemon, how long the docker client
#: gets to exit on its own (it reports the container's status) before SIGKILL.
CLIENT_GRACE = 5.0
#: After killing a docker client mid-creation: how long to watch for its container to start.
LATE_START_WATCH = 2.0
#: How long the end of the run waits for an escalation still talking to the daemon.
CLI_WAIT = 30.0


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
        stop_timeout: float = STOP_TIMEOUT,
        redacted_log: RedactedLog | None = None,
    ) -> None:
        self.argv = argv
        self.raw_log = raw_log
        self.redacted_log = redacted_log
        self.stop_timeout = stop_timeout
        #: Set when CMD is ``docker run``: how to reach its container.
        self.docker = parse_docker_run(argv)
        self.cidfile: str | None = None
        self._cid_dir: str | None = None
        self.container_id: str | None = None
        #: What ``docker inspect`` said after CMD exited (None: not docker, or not known).
        self.oom_killed: bool | None = None
        #: How the stop was escalated ("container ... stopped through the daemon", "SIGKILL
        #: to ...") and why (``stop_reason``); empty when CMD stopped on its own.
        self.escalated: list[str] = []
        self.stop_reason = ""
        self._stop_requested: float | None = None
        self._escalate = threading.Event()
        self._watchdog: threading.Thread | None = None
        #: Where the stop's progress is told (one line each); set by the CLI.
        self.notify: Callable[[str], None] | None = None
        self._early_signal: int | None = None
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
        # --- journal (issue 16): set by the CLI (hal_logging.pipeline.journal)
        #: JournalWriter: every read, and how the parser was fed, before parsing.
        self.journal: Any = None
        #: Per stream, the checkpointed input of the journal (JournalInput), or None.
        self.journal_inputs: dict[str, Any] = {}
        #: Seconds after the last chunk during which timer ticks are journaled
        #: (a tick can close a traceback group only until then).
        self.journal_tick_window = 1.0 + 2 * POLL
        # --- end journal

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
        argv = self.argv
        if self.docker is not None and not self.docker.detach:
            argv = self.docker.with_options(argv, "--label", self._label)
            if self.docker.cidfile:
                self.cidfile = self.docker.cidfile
            else:
                self._cid_dir = tempfile.mkdtemp(prefix="hal-forward-cid-")
                self.cidfile = os.path.join(self._cid_dir, "cid")  # must not exist yet
                argv = self.docker.with_cidfile(argv, self.cidfile)
        self.lifetime_start = time.time()
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
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
        if self._early_signal is not None:  # a signal came while CMD was being started
            self.forward_signal(self._early_signal)
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
        offset = 0  # journal: this stream's offset of the next byte read
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
                if self.journal is not None:  # journal: before parsing
                    self.journal.data(stream, offset, time.time(), data)
                    offset += len(data)
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

    @property
    def merged(self) -> bool:
        """CMD's stdout carries its stderr too (``docker run -t``: one pseudo-terminal)."""
        return self.docker is not None and self.docker.tty

    def forward_signal(self, signum: int) -> None:
        """Pass SIGINT/SIGTERM on to CMD's process group (it decides how to stop; we
        keep reading) and start the ``stop_timeout`` clock; a second signal escalates
        at once. Safe in a signal handler: the escalation runs in its own thread."""
        proc = self.proc
        if proc is None:  # not started yet: start() passes it on at once
            self._early_signal = signum
            return
        if proc.returncode is not None:
            return
        if self._stop_requested is not None:
            self._escalate.set()
            return
        self._stop_requested = time.monotonic()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        self._watchdog = threading.Thread(
            target=self._watch_stop, args=(signum,), name="hal-stop-watchdog", daemon=True
        )
        self._watchdog.start()

    def _alive(self) -> bool:
        proc = self.proc
        return proc is not None and proc.poll() is None

    def _container(self) -> str | None:
        if self.container_id is None and self.cidfile:
            self.container_id = read_cid(self.cidfile)
        return self.container_id

    def _watch_stop(self, signum: int) -> None:
        """Wait up to ``stop_timeout`` (or a second signal) for CMD to exit, then escalate."""
        assert self._stop_requested is not None
        if self.notify is not None:  # from this thread: a signal handler must not print
            self.notify(
                f"{signal.Signals(signum).name} passed on to {os.path.basename(self.argv[0])}; "
                f"it has {self.stop_timeout:g}s (--stop-timeout) to exit before it is stopped "
                "for good (a second signal: at once)"
            )
        deadline = self._stop_requested + self.stop_timeout
        while self._alive():
            left = deadline - time.monotonic()
            if left <= 0 or self._escalate.wait(min(POLL, left)):
                self.stop_reason = (
                    "a second signal"
                    if self._escalate.is_set()
                    else f"the command did not exit within --stop-timeout {self.stop_timeout:g}s"
                )
                self._escalate_now()
                return
        # CMD exited on its own. A docker client that died of the signal (e.g. run with
        # --sig-proxy=false) may leave its container running: stop that one too, with
        # what is left of the stop timeout as its grace.
        cid = self._container()
        if cid is not None and self.docker is not None:
            state = container_state(self.docker.prefix, cid)
            if state is not None and state[0]:
                self.stop_reason = "the docker client exited, its container still ran"
                grace = max(0.0, deadline - time.monotonic())
                if stop_container(self.docker.prefix, cid, grace):
                    self.escalated.append(f"container {cid[:12]} stopped through the daemon")

    @property
    def _label(self) -> str:
        return f"{INVOCATION_LABEL}={self.invocation}"

    def _escalate_now(self) -> None:
        proc = self.proc
        assert proc is not None
        docker = self.docker
        cid = self._container()
        if docker is not None:
            # No id yet (a signal while the container was being created): its label finds it.
            for c in [cid] if cid is not None else find_labelled(docker.prefix, self._label):
                if stop_container(docker.prefix, c):
                    self.escalated.append(f"container {c[:12]} stopped through the daemon")
            # The client sees its container end and exits with its status (137).
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(CLIENT_GRACE)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self.escalated.append(f"SIGKILL to {os.path.basename(self.argv[0])}'s process group")
        if docker is not None and cid is None:
            # A container created while the client was dying has no one left to stop
            # it, and a start request already in flight may still run it: for a short
            # while, stop what runs and remove what was created but never started.
            deadline = time.monotonic() + LATE_START_WATCH
            while True:
                pending = False
                for c in find_labelled(docker.prefix, self._label):
                    status = container_status(docker.prefix, c)
                    if status in ("running", "restarting", "paused"):
                        if stop_container(docker.prefix, c):
                            self.escalated.append(f"container {c[:12]} stopped through the daemon")
                        else:
                            pending = True
                    elif status == "created":
                        if remove_container(docker.prefix, c):
                            self.escalated.append(
                                f"container {c[:12]} removed before it started (created while "
                                "its client was stopped)"
                            )
                        else:
                            pending = True
                if not pending and time.monotonic() >= deadline:
                    break
                if time.monotonic() >= deadline + CLIENT_GRACE:
                    break
                time.sleep(0.2)

    def events(self) -> Iterator[Event]:
        if self.proc is None and self.spawn_error is None:
            self.start()
        if self.proc is None:  # could not be started: no output, the runner's row says why
            return
        open_streams = {"stdout", "stderr"}
        for stream in ("stdout", "stderr"):
            # Under a pseudo-terminal both streams arrive on stdout: say "unknown".
            tag = "unknown" if self.merged and stream == "stdout" else stream
            yield Opened(stream, tag, self.source_id(stream), 0, self.journal_inputs.get(stream))
        journal = self.journal
        fed = {"stdout": 0, "stderr": 0}  # journal: stream offsets fed to the parser
        last_chunk = 0.0
        exited_at: float | None = None
        held: tuple[str, bytes | None] | None = None
        while open_streams:
            try:
                if held is not None:
                    (stream, data), held = held, None
                else:
                    stream, data = self._q.get(timeout=POLL)
                if data is not None and len(data) < COALESCE_BYTES:
                    # Reads from a pseudo-terminal are small (a few KB): when several
                    # wait already, join them into one chunk (no added delay) so the
                    # per-chunk work is amortised as for a pipe. Order is kept.
                    parts = [data]
                    size = len(data)
                    while size < COALESCE_BYTES:
                        try:
                            item = self._q.get_nowait()
                        except queue.Empty:
                            break
                        if item[0] != stream or item[1] is None:
                            held = item
                            break
                        parts.append(item[1])
                        size += len(item[1])
                    if len(parts) > 1:
                        data = b"".join(parts)
            except queue.Empty:
                if self.proc.poll() is not None:
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > PIPE_GRACE:
                        # Something else still holds the pipes open: stop reading them.
                        for s in sorted(open_streams):
                            yield self._closed(s, fed)
                        open_streams.clear()
                        break
                if journal is not None and time.time() - last_chunk <= self.journal_tick_window:
                    t = time.time()
                    journal.tick(t)
                    yield Idle(t)
                    continue
                yield IDLE
                continue
            if data is None:
                open_streams.discard(stream)
                yield self._closed(stream, fed)
            else:
                self.total_bytes += len(data)
                if journal is not None:
                    last_chunk = t = time.time()
                    fed[stream] += len(data)
                    journal.fed(stream, fed[stream], t)
                    yield Chunk(stream, data, t)
                else:
                    yield Chunk(stream, data)
        self.returncode = self.proc.wait()
        self.seconds = time.monotonic() - self.started
        if self._watchdog is not None:
            self._watchdog.join(CLI_WAIT)
        cid = self._container()
        if cid is not None and self.docker is not None:
            state = container_state(self.docker.prefix, cid)  # None once --rm removed it
            if state is not None:
                self.oom_killed = state[1]

    def _closed(self, stream: str, fed: dict[str, int]) -> Closed:
        """A stream's end; journaled with the time its last partial line is framed."""
        if self.journal is None:
            return Closed(stream)
        t = time.time()
        self.journal.closed(stream, True, t)
        return Closed(stream, True, t)

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
            text = f"killed by {name}"
        else:
            text = f"exit status {rc}"
        if self.oom_killed:
            text += " (the container was killed by the OOM killer)"
        if self.escalated:
            text += f" (stopped for good after {self.stop_reason})"
        return text

    def final_row_info(self) -> tuple[str, str, dict[str, Any], str]:
        """The final row: "command NAME finished ...", ids from this invocation."""
        name = os.path.basename(self.argv[0]) if self.argv else "?"
        extra: dict[str, Any] = {}
        if self.container_id is not None:  # CMD was docker run: what the daemon said
            extra["container_id"] = self.container_id
        if self.oom_killed is not None:
            extra["oom_killed"] = self.oom_killed
        return "command", name, extra, f"{self.invocation}-forward"

    def close(self) -> None:
        if self._cid_dir is not None:
            shutil.rmtree(self._cid_dir, ignore_errors=True)
            self._cid_dir = None
        if self.redacted_log is not None:
            self.redacted_log.close()
        if self._raw is not None:
            with self._raw_lock, contextlib.suppress(OSError):
                self._raw.close()
            self._raw = None
