"""Follow a Docker container the VM started (``hal-logging-forward --container NAME_OR_ID``).

The harness usually starts its containers itself (``docker run -d``); this
source attaches to one, running or already exited, reads its output from the
start (or from the checkpoint of an earlier run), follows it until the
container exits, and then knows the container's exit status and whether the
OOM killer ended it, for the final row and the forwarder's exit status.

Two ways to read, chosen from ``docker inspect``:

* **json-file** (Docker's default driver) with a readable ``LogPath``: the file
  itself and its rotated files, oldest first
  (:mod:`~hal_logging.pipeline.sources.jsonfile`: exact byte offsets, one
  checkpoint entry keyed by the log path, which contains the container id),
  parsed as ``docker-json`` (each line keeps its stream and time; lines the
  daemon split at 16 KB are joined again). The end is
  known from the daemon (a thread waits on ``POST /containers/ID/wait``): the
  daemon has written every line before it reports the exit, so the file is
  then read to its end and the source stops.
* **any other driver** (``local``, ``journald``, ...), or a log file the
  forwarder may not read (a forwarder not running as root): the Engine API's
  log stream, followed, with stdout and stderr apart. Each message is written
  as one json-file line into a stream of bytes that exists only here, so both
  ways share one parser; record ids come from that stream's offsets. The
  daemon serves the same messages in the same order every time, so a rerun
  reads them again from the start and skips, byte for byte, what the
  checkpoint says was delivered (checked by a hash of the bytes before it).
  If the driver has since dropped its oldest messages (its own rotation), the
  check fails and the rerun asks the daemon for the messages from the
  checkpoint's time on (``since``, inclusive): those are read as a new
  generation with new record ids, so a message at exactly that time or
  delivered after the last checkpoint write can be stored twice, and a
  stderr message stamped before the last delivered stdout message but
  written after it can be missed. Reading the whole log again on a rerun is
  the price of exact ids; it is a rerun after a crash, and task logs are MBs.

A container that is gone (``--rm`` removes it on exit) or a daemon that does not
answer is a :class:`~hal_logging.pipeline.sources.docker_engine.ContainerError`
with a one-line message, raised before anything is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hal_logging import _json
from hal_logging.pipeline.checkpoint import (
    CHECKPOINT_SUFFIX,
    CheckpointStore,
    FileIdentity,
    state_dir,
)
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.outcome import COMMAND_EXITED
from hal_logging.pipeline.sources import IDLE, Chunk, Closed, Event, FileInput, Opened
from hal_logging.pipeline.sources.docker_engine import (
    ContainerError,
    ContainerInfo,
    Frame,
    connect,
    daemon_time,
    inspect,
    log_frames,
    open_logs,
    run_seconds,
    since_param,
    wait,
)
from hal_logging.pipeline.sources.jsonfile import JsonFileReader
from hal_logging.schema import CONTEXT_COLUMNS

#: ExecutionMode when neither a flag, the VM's environment nor the container's sets it:
#: the VM side read these rows from the Docker daemon, so "docker" is a fact it knows.
DEFAULT_EXECUTION_MODE = "docker"
#: Bytes before a checkpoint offset of the API stream whose hash must match to resume.
TAIL_BYTES = 64
QUEUE_FRAMES = 256
POLL = 0.1
SLOW_POLL = 0.25
#: Bytes of synthetic json-file lines gathered into one chunk for the runner.
CHUNK_TARGET = 128 * 1024
#: Seconds to wait for the daemon's exit report once the log stream has ended.
EXIT_GRACE = 5.0

_CONTEXT_ENV = frozenset(c.env for c in CONTEXT_COLUMNS if c.env)


def container_env(
    info: ContainerInfo, config: ForwardConfig, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The part of the container's environment the forwarder uses, shaped like wrap
    mode's ``-e NAME=VALUE`` pairs (``ForwardConfig.command_env``), whose values
    are redacted (all but the run context and harmless names such as ``PATH``).

    - the run context (``HAL_RUN_ID``, ...): the VM set it when it created the
      container, so it fills trusted context not given by a flag or the VM's
      own environment; ``HAL_EXECUTION_MODE`` defaults to ``docker``;
    - every variable the VM gave at ``docker run`` (``-e``, ``--env-file``): those
      that the image does not set to the same value, exactly as wrap mode
      treats ``-e`` values (when the image cannot be inspected, this part is
      left out);
    - from the image's own variables, only secret-looking names (``*KEY*``,
      ``*TOKEN*``, ...; unless that rule is off) and ``--redact-env`` names:
      its ``LANG``, versions and checksums would only wreck the logs.
    """
    from hal_logging.pipeline.filters import REDACT_ENV_VAR
    from hal_logging.pipeline.filters.redact import looks_secret

    env = info.env
    vm_env = os.environ if environ is None else environ
    named = [*config.redact_env, *vm_env.get(REDACT_ENV_VAR, "").split(",")]
    wanted = {n.strip() for n in named if n.strip()}
    secret_names = config.redact_secret_env_names
    image_env = info.image_env
    out = {k: v for k, v in env.items() if k in _CONTEXT_ENV and v}
    for k, v in env.items():
        given = image_env is not None and image_env.get(k) != v
        if given or k in wanted or (secret_names and looks_secret(k)):
            out[k] = v
    if not out.get("HAL_EXECUTION_MODE"):
        out["HAL_EXECUTION_MODE"] = DEFAULT_EXECUTION_MODE
    return out


def default_checkpoint_path(container_id: str) -> str:
    """Per container, in the user's state directory (never inside Docker's own folders)."""
    return str(state_dir() / f"container-{container_id}{CHECKPOINT_SUFFIX}")


def open_store(
    config: ForwardConfig, info: ContainerInfo, destination: str = ""
) -> CheckpointStore | None:
    """The container's checkpoint (``--checkpoint PATH`` or one per container id), locked,
    holding the entries of ``destination`` (a checkpoint belongs to its destination).

    Raises CheckpointError (another forwarder follows this container, or the
    place is not writable).
    """
    if config.no_checkpoint:
        return None
    path = os.path.abspath(config.checkpoint or default_checkpoint_path(info.id))
    return CheckpointStore(path, destination).open(lock=not config.dry_run)


class _StreamInput(FileInput):
    """A checkpointable input that is not a file: the API's log stream of one container.

    The runner asks for an entry at message boundaries only (ends of framed
    lines, starts of held lines); the hash of the bytes before each boundary
    is remembered until the runner has moved past it.
    """

    def __init__(self, key: str, store: CheckpointStore | None) -> None:
        super().__init__(key, -1, FileIdentity(0, 0, 0, ""), store)
        self.bounds: dict[int, tuple[str, str]] = {}  # offset -> (tail hash, time)

    def entry(self, source: str, offset: int) -> dict[str, Any]:
        thash, when = self.bounds.get(offset, ("", ""))
        for k in [k for k in self.bounds if k < offset]:
            del self.bounds[k]
        return {
            "path": self.path,
            "source": source,
            "offset": offset,
            "tail_hash": thash,
            "time": when,
            "updated": time.time(),
        }

    def close(self) -> None:
        pass


def _tail_hash(tail: bytes) -> str:
    return hashlib.blake2b(tail, digest_size=10).hexdigest()


def _encode(frame: Frame) -> bytes:
    """One message as a json-file line (invalid UTF-8 replaced, as that driver does)."""
    rec = {"log": frame.data.decode("utf-8", "replace"), "stream": frame.stream, "time": frame.time}
    return _json.dumps(rec) + b"\n"


class ContainerSource:
    """See the module docstring. Exposes, like ``CommandSource``, ``returncode``,
    ``exit_status``, ``describe_status()`` and ``seconds`` once the container exited."""

    mode = "container"

    def __init__(
        self,
        client: Any,
        info: ContainerInfo,
        store: CheckpointStore | None,
        stop: threading.Event,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.info = info
        self.store = store
        self.stop = stop
        self.notify = notify or (lambda _msg: None)
        self.returncode: int | None = None
        self.oom_killed: bool | None = None
        self.seconds = 0.0
        self.total_bytes = 0
        self.how = ""  # "json-file" or "api": how the output was read
        self.resumed = False
        self.finished_at = ""
        #: The output was not read to the container's end (the log stream broke).
        self.incomplete = False
        #: Every line up to the container's exit was read (set by the readers).
        self._read_all = False
        self._outcome: tuple[int | None, bool | None, float] = (None, None, 0.0)
        self._exited = threading.Event()
        self._attached = time.monotonic()
        self._res: Any = None
        self._waiter: threading.Thread | None = None

    @property
    def lifetime_start(self) -> float | None:
        """When the container started, by the daemon's clock (None: not started yet).

        Wire-line times before it are claims, as in wrap mode (the parser's
        ``not_before``): a container cannot date its rows before it existed.
        """
        started = daemon_time(self.info.started_at)
        return None if started is None else started.timestamp()

    # -- exit status (the runner's final row and the forwarder's status) ------------

    @property
    def exit_status(self) -> int:
        return 1 if self.returncode is None else self.returncode

    @property
    def outcome(self) -> str | None:
        """The container ran and exited (a kill by the daemon is exit status 137)."""
        return None if self.returncode is None else COMMAND_EXITED

    def describe_status(self) -> str:
        rc = self.returncode
        text = f"exit status {rc}"
        if rc is not None and rc > 128:
            with contextlib.suppress(ValueError):
                text += f" ({signal.Signals(rc - 128).name})"
        if self.oom_killed:
            text += ", killed by the OOM killer"
        return text

    def summary_note(self) -> str:
        """One line for the run summary: which container, how it ended, how it was read."""
        name = self.info.name or self.info.id[:12]
        end = self.describe_status() if self.returncode is not None else "still running"
        how = {"json-file": f"its json-file log {self.info.log_path}", "api": "the Engine API"}
        resumed = ", resumed from the checkpoint" if self.resumed else ""
        return f"container {name} ({self.info.id[:12]}): {end}; read from {how.get(self.how, '?')}{resumed}"

    def final_row_info(self) -> tuple[str, str, dict[str, Any], str]:
        """(kind, name, extra Properties, record-id source) of the final row.

        The record-id source is the container id: a rerun writes the same
        row with the same id, which the workspace stores once.
        """
        props: dict[str, Any] = {
            "container_id": self.info.id,
            "oom_killed": self.oom_killed,
            "log_driver": self.info.driver,
            "finished_at": self.finished_at or None,
        }
        return (
            "container",
            self.info.name or self.info.id[:12],
            props,
            f"container:{self.info.id}-forward",
        )

    # -- waiting for the exit --------------------------------------------------------

    def _wait_for_exit(self) -> None:
        """Thread: the daemon's answer to "wait", then the final state from inspect."""
        code: int | None = None
        for attempt in range(1_000_000):
            if self.stop.is_set():
                return
            try:
                code = wait(self.client, self.info.id)
                break
            except Exception as exc:  # daemon restarting, container removed while waiting
                try:
                    info = inspect(self.client, self.info.id)
                except ContainerError:
                    self.notify(
                        f"container {self.info.name or self.info.id[:12]} disappeared or the "
                        f"daemon stopped answering ({type(exc).__name__}): its exit status is unknown"
                    )
                    break
                if not info.running and info.status != "created":
                    code = info.exit_code
                    break
                self.stop.wait(min(5.0, 0.5 * (attempt + 1)))
        seconds = time.monotonic() - self._attached
        oom: bool | None = None
        try:
            final = inspect(self.client, self.info.id)
        except ContainerError:  # removed on exit (--rm): the wait's code is all there is
            pass
        else:
            if final.exit_code is not None:
                code = final.exit_code
            oom = final.oom_killed
            self.finished_at = final.finished_at
            secs = run_seconds(final.started_at, final.finished_at)
            if secs is not None:
                seconds = secs
        self._outcome = (code, oom, seconds)
        self._exited.set()

    def _start_waiter(self) -> None:
        self._waiter = threading.Thread(target=self._wait_for_exit, name="hal-wait", daemon=True)
        self._waiter.start()

    # -- events ------------------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        if self.info.status == "created":
            # Created, not started yet (docker create): its log appears at the start.
            self.notify(f"container {self.info.name} is created but not started: waiting")
            while self.info.status == "created" and not self.stop.is_set():
                yield IDLE
                self.stop.wait(SLOW_POLL)
                with contextlib.suppress(ContainerError):
                    self.info = inspect(self.client, self.info.id)
            if self.stop.is_set():
                return
        self._start_waiter()
        if self.info.driver == "json-file" and self.info.log_path and _readable(self.info.log_path):
            self.how = "json-file"
            yield from self._file_events()
        else:
            if self.info.driver == "json-file":
                self.notify(
                    f"cannot read {self.info.log_path or 'the json-file log'}: following the "
                    "container through the Engine API instead"
                )
            self.how = "api"
            yield from self._api_events()
        if self._read_all:
            # Everything up to the exit was read: the status is the daemon's next word.
            while not self._exited.wait(POLL):
                if self.stop.is_set():
                    break
                yield IDLE
            if self._exited.is_set():
                # Known only now: a run stopped early has no exit status to report.
                self.returncode, self.oom_killed, self.seconds = self._outcome

    def _file_events(self) -> Iterator[Event]:
        reader = JsonFileReader(
            self.info.log_path, self.store, self.stop, self._exited, self.notify
        )
        for ev in reader.events():
            if isinstance(ev, Chunk):
                self.total_bytes += len(ev.data)
            yield ev
        self.resumed = reader.resumed
        self._read_all = reader.read_to_exit

    def _api_events(self) -> Iterator[Event]:
        key = f"container:{self.info.id}:api"
        base_source = key
        entry = self.store.get(key) if self.store is not None else None
        resume = 0
        want_hash = ""
        since: str | None = None
        source = base_source
        if entry and str(entry.get("source", "")).startswith(base_source):
            with contextlib.suppress(TypeError, ValueError):
                resume = max(0, int(entry.get("offset", 0)))
            want_hash = str(entry.get("tail_hash", ""))
            source = str(entry["source"])
        inp = _StreamInput(key, self.store)
        frames, reader = self._start_reader(since)
        pos = 0
        tail = b""
        if resume:
            # Skip what was delivered, byte for byte, then check we are where we were.
            ok = False
            while pos < resume:
                item = self._next(frames)
                if item is None:
                    break
                if isinstance(item, Frame):
                    line = _encode(item)
                    pos += len(line)
                    tail = (tail + line)[-TAIL_BYTES:]
                elif self.stop.is_set():
                    return
            ok = pos == resume and _tail_hash(tail) == want_hash
            if ok:
                self.resumed = True
            else:
                when = str((entry or {}).get("time", ""))
                since = since_param(when) if when else None
                self.notify(
                    f"container {self.info.name}: its log no longer matches the checkpoint "
                    "(the log driver dropped old messages?): reading "
                    + (f"from {when} on (since)" if since else "it again from its start")
                    + " with new record ids; rows near that point may be stored twice"
                )
                self._stop_reader()
                frames, reader = self._start_reader(since)
                source = f"{base_source}~{uuid.uuid4().hex[:8]}"
                pos, resume, tail = 0, 0, b""
        gen = "container"
        # (A resumed start keeps the checkpoint's time: the since fallback needs it.)
        inp.bounds[pos] = (_tail_hash(tail), str((entry or {}).get("time", "")) if pos else "")
        yield Opened(gen, "unknown", source, pos, inp)
        complete = True
        last_time = ""
        while True:
            if self.stop.is_set() and not self._exited.is_set():
                complete = False  # a signal: what is unread stays for the rerun
                break
            item = self._next(frames)
            if item is None:
                break
            if not isinstance(item, Frame):
                yield IDLE
                continue
            parts: list[bytes] = []
            size = 0
            while isinstance(item, Frame):
                line = _encode(item)
                parts.append(line)
                size += len(line)
                pos += len(line)
                tail = (tail + line)[-TAIL_BYTES:]
                last_time = item.time or last_time
                if self.store is not None:
                    inp.bounds[pos] = (_tail_hash(tail), last_time)
                if size >= CHUNK_TARGET:
                    break
                try:
                    item = frames.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    frames.put(None)  # seen again by the outer loop: the end
                    break
            data = b"".join(parts)
            self.total_bytes += len(data)
            yield Chunk(gen, data)
        if complete and not self._stream_ended_at_exit(reader.error):
            complete = False
            self.incomplete = True
        self._read_all = complete
        yield Closed(gen, complete)

    def _stream_ended_at_exit(self, error: str | None) -> bool:
        """Whether the log stream ended because the container exited (else: cut short)."""
        if error is None:
            if self._exited.wait(EXIT_GRACE):
                return True
            with contextlib.suppress(ContainerError):
                if not inspect(self.client, self.info.id).running:
                    return True
        self.notify(
            f"container {self.info.name or self.info.id[:12]}: the daemon's log stream ended "
            f"while the container runs ({error or 'closed'}); what came before was read, "
            "rerun the same command to resume from the checkpoint"
        )
        return False

    def _next(self, frames: queue.Queue[Frame | None]) -> Frame | bool | None:
        """A frame, None at the end of the stream, or False after a quiet poll interval."""
        try:
            return frames.get(timeout=POLL)
        except queue.Empty:
            return False

    def _start_reader(self, since: str | None) -> tuple[queue.Queue[Frame | None], _LogReader]:
        frames: queue.Queue[Frame | None] = queue.Queue(QUEUE_FRAMES)
        try:
            self._res = open_logs(self.client, self.info.id, since=since)
        except Exception as exc:
            raise ContainerError(
                f"cannot read the logs of container {self.info.name or self.info.id[:12]} "
                f"(log driver {self.info.driver or '?'}): {_first_line(exc)}"
            ) from exc
        reader = _LogReader(self._res, self.info.tty, frames, self.stop)
        reader.start()
        return frames, reader

    def _stop_reader(self) -> None:
        res, self._res = self._res, None
        if res is not None:
            with contextlib.suppress(Exception):
                res.close()

    def close(self) -> None:
        self._stop_reader()


class _LogReader(threading.Thread):
    """Reads the API's log stream into a bounded queue (backpressure: a slow sink
    slows the reading, not the forwarder's memory); None at its end."""

    def __init__(
        self, res: Any, tty: bool, frames: queue.Queue[Frame | None], stop: threading.Event
    ) -> None:
        super().__init__(name="hal-container-logs", daemon=True)
        self.res = res
        self.tty = tty
        self.frames = frames
        self.stop = stop
        self.error: str | None = None

    def run(self) -> None:
        try:
            for frame in log_frames(self.res, tty=self.tty):
                self.frames.put(frame)
        except Exception as exc:
            if not self.stop.is_set():
                self.error = _first_line(exc)
        finally:
            self.frames.put(None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def attach(
    name_or_id: str,
) -> tuple[Any, ContainerInfo]:
    """Connect to the daemon and inspect the container (raises ContainerError)."""
    client = connect()
    return client, inspect(client, name_or_id)


__all__ = [
    "DEFAULT_EXECUTION_MODE",
    "ContainerError",
    "ContainerInfo",
    "ContainerSource",
    "attach",
    "container_env",
    "default_checkpoint_path",
    "open_store",
]
