"""``AzureMonitorHandler``: Python ``logging`` straight to a Log Analytics table.

The handler the old harness had deadlocked on its first record, flushed only
when another record came, never retried, buffered without bound and raised
into ``logger.info`` (docs/facts.md §4). This one is built so that none of that can
happen, and so that a ``logger.info`` call never waits on the network:

``emit()`` (the caller's thread)
    formats the record into a row (``hal_logging.formatter.JsonFormatter``, the
    same rows the container writes, plus ``Properties.hal``) and puts it on a
    bounded queue with ``put_nowait``. It takes no lock of its own: ``handle()``
    is overridden to skip the handler lock, because the queue is already
    thread-safe, and because ``logging.shutdown()`` holds that lock while it
    calls ``flush()`` and ``close()`` -- a sender thread that logged (azure-core
    does) and waited for the lock would then deadlock with the thread waiting
    for it. ``emit()`` never raises: a failure is counted in :attr:`stats`.

the sender thread (one per handler, started on the first record)
    wakes every ``flush_interval`` seconds, when ``batch_size`` rows are
    waiting, and at once for ERROR and above; it hands the rows to the
    delivery engine :mod:`hal_logging.azure.uploader` (the forwarder's:
    1 MiB packing, gzip, retries, splitting, dead-lettering of refused rows).

when the service is down, or a burst outruns it, and the queue is full
    rows are *spilled*, never dropped: appended to a JSON-lines file in the
    wire format (docs/contract.md §2; one ``{"_hal":1,...}`` row per line). So are the
    rows of a batch the engine gave up on (after ``retry_timeout``). The spill
    file is a backlog, not a grave: once the service accepts rows again the
    sender renames it to ``<name>.resending.jsonl`` and sends it, chunk by
    chunk, between batches of new rows. What is still there at exit (or what
    ``close()`` had no time for) stays in the spill file, oldest first, for
    ``hal-logging-forward --resend SPILL_FILE``. All counted in :attr:`stats`; the
    first spill, the first failure and rows left at exit each print one line
    on stderr naming the file.

no loops
    Records logged by a delivery thread (the sender, and the engine's request
    threads, all named ``hal-azure-...``) and records of the HTTP and identity
    libraries' loggers from any thread (``azure``, ``msal``, ``urllib3``,
    ``requests``, ``httpx``, ``httpcore``, ``hal_logging.azure``) are not queued
    here; they still reach the other handlers (file, console). Otherwise
    sending a batch would log, which would fill the next batch, forever.

close / exit
    ``close()`` asks the sender to send what is queued and waits at most
    ``close_timeout`` seconds; what is left is spilled. It runs from
    ``logging.shutdown()`` and from an exit hook that fires when the main
    thread ends (before ``concurrent.futures`` stops taking work, which the
    engine needs). ``flush()`` waits, bounded the same way, until everything
    queued before it was handed over. Called while the thread holds logging's
    module lock (``dictConfig`` replacing handlers), neither waits: the sender
    may need that lock, so ``close()`` finishes in the background (the exit
    hook waits for it).

fork
    ``os.register_at_fork``: a child process gets a fresh queue, lock, engine
    (no shared sockets) and sender thread, and new record ids; rows its parent
    had queued stay the parent's to send.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (its exit hook must be registered before ours)
import contextlib
import itertools
import logging
import os
import queue
import shutil
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from hal_logging import _json
from hal_logging.schema import (
    LOG_TYPE_VM,
    MAX_FIELD_BYTES,
    PROP_HAL,
    STREAM_NAME,
    WIRE_PREFIX,
    WIRE_VERSION,
    WIRE_VERSION_KEY,
)

__all__ = ["DEFAULT_IGNORED_LOGGERS", "AzureMonitorHandler", "RowSender", "UploaderSender"]

#: Loggers whose records never enter the queue (from any thread): the HTTP and
#: identity stacks log about the very requests that deliver the queue.
DEFAULT_IGNORED_LOGGERS: Final[tuple[str, ...]] = (
    "azure",
    "msal",
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "hal_logging.azure",
)
#: Threads that deliver rows: ours ("hal-azure-sender-..."), and the engine's request
#: and batch pools ("hal-azure-req", "hal-azure-batch"). Their records are never queued.
DELIVERY_THREAD_PREFIX: Final = "hal-azure-"

#: Most rows handed to the engine in one call (it cuts them into ≤ 1 MiB requests).
_MAX_ROWS_PER_SEND: Final = 5000
_LEVEL_URGENT: Final = logging.ERROR
_PROPS_EMPTY_END: Final = b'"Properties":{}}'

Deadline = Callable[[], "float | None"]


class RowSender(Protocol):
    """What the handler needs from a delivery engine.

    ``send(lines, deadline)`` gets wire lines (``{"_hal":1,...}``, docs/contract.md §2)
    and returns when they were accepted or dead-lettered as refused by the
    service (optionally returning an object with ``delivered`` and
    ``dead_lettered`` counts); it raises when they could not be delivered.
    ``deadline()`` is a ``time.monotonic()`` value to give up by, or None.
    """

    def send(self, lines: Sequence[bytes], deadline: Deadline) -> Any: ...

    def close(self) -> None: ...


class UploaderSender:
    """The default :class:`RowSender`: :class:`hal_logging.azure.uploader.Uploader`.

    A thin adapter: wire lines become row bytes (the marker dropped) and go to
    ``Uploader.send_encoded`` as they are, so a row is serialised once, in the
    caller's thread, by the formatter. The rare row over 64 KB goes through
    ``rowfit.fit_row`` first, as ``Uploader.send`` would do.
    """

    def __init__(
        self,
        dce_endpoint: str,
        dcr_id: str,
        stream_name: str,
        *,
        credential: Any = None,
        dead_letter: Path | None = None,
        retry_timeout: float | None = 120.0,
        read_timeout: float = 10.0,
    ) -> None:
        from hal_logging.azure.rowfit import fit_row
        from hal_logging.azure.uploader import Uploader, UploadSettings

        self._fit_row = fit_row
        self.retry_timeout = retry_timeout
        # Inline sends (max_in_flight=0): requests run in the handler's own daemon
        # sender thread, so a hung request never holds up interpreter exit beyond
        # close_timeout (a pool thread would be joined at exit).
        self.settings = UploadSettings(
            retry_timeout=retry_timeout, read_timeout=read_timeout, max_in_flight=0
        )
        self.uploader = Uploader(
            dce_endpoint,
            dcr_id,
            stream_name,
            credential="auto" if credential is None else credential,
            dead_letter=dead_letter,
            settings=self.settings,
        )

    def encode(self, lines: Sequence[bytes]) -> list[bytes]:
        out: list[bytes] = []
        cut = len(WIRE_PREFIX)
        for line in lines:
            data = b"{" + line[cut:] if line.startswith(WIRE_PREFIX) else line
            if len(data) > MAX_FIELD_BYTES:
                row = _json.loads(data)
                row.pop(WIRE_VERSION_KEY, None)
                _, data, _ = self._fit_row(row, self.settings.max_request_bytes)
            out.append(data)
        return out

    def send(self, lines: Sequence[bytes], deadline: Deadline) -> Any:
        """Deliver, retrying for at most ``retry_timeout`` or until ``deadline()``."""
        limit = self.retry_timeout
        own = None if limit is None else time.monotonic() + limit

        def combined() -> float | None:
            outer = deadline()
            if own is None:
                return outer
            return own if outer is None else min(own, outer)

        return self.uploader.send_encoded(self.encode(lines), deadline=combined)

    def close(self) -> None:
        self.uploader.close()


def _holding_logging_lock() -> bool:
    """Does this thread hold ``logging``'s module lock (an RLock)?"""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    try:
        return bool(is_owned()) if is_owned is not None else False
    except Exception:
        return False


def _read_lines(path: Path, offset: int, limit: int) -> tuple[list[bytes], int]:
    """Up to ``limit`` non-empty lines of ``path`` from byte ``offset``; and the offset after them."""
    lines: list[bytes] = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while len(lines) < limit:
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


def _default_spill_path(stream: str) -> Path:
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


class AzureMonitorHandler(logging.Handler):
    """Send log records to Azure Monitor (Logs Ingestion API), never blocking the caller.

    Arguments as in the seed: ``dce_endpoint`` (the Data Collection Endpoint's
    logs ingestion URL, ``AZURE_MONITOR_DATA_COLLECTION_ENDPOINT``), ``dcr_id``
    (the rule's *immutable* id, ``dcr-...``), ``stream_name``, ``batch_size``
    (queued rows that trigger a send) and ``flush_interval`` (seconds between
    sends otherwise).

    Keyword-only:

    - ``queue_size``: rows held in memory; beyond that, new rows are spilled.
    - ``credential``: an azure-identity credential or a kind for
      :func:`hal_logging.azure.credentials.make_credential` (default ``"auto"``:
      a service principal from ``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``/
      ``AZURE_CLIENT_SECRET``, else the VM's managed identity).
    - ``spill_path``: the JSON-lines file for rows that could not be sent
      (default ``$HAL_LOGGING_SPILL_DIR/`` or ``~/.local/state/hal-logging/spill/``
      ``<stream>-<time>-<pid>.jsonl``); refused rows (400) go next to it, in
      ``<name>.refused.jsonl``, with the service's answer.
    - ``close_timeout``: the most ``close()`` and ``flush()`` wait (seconds).
    - ``retry_timeout``: how long one batch is retried before it is spilled.
    - ``context``: context columns (any spelling: ``run_id=``, ``RunID=``) over
      the environment's ``HAL_*``; LogType defaults to ``VMOperation``.
    - ``ignored_loggers``: logger-name prefixes never queued (default: the
      Azure SDK, msal, urllib3, requests, httpx, httpcore, hal_logging.azure).
    - ``sender``: a ready :class:`RowSender` instead of the default engine.
    - ``level``: the handler's level.
    """

    def __init__(
        self,
        dce_endpoint: str,
        dcr_id: str,
        stream_name: str = STREAM_NAME,
        batch_size: int = 500,
        flush_interval: float = 5.0,
        *,
        queue_size: int = 10_000,
        credential: Any = None,
        spill_path: str | os.PathLike[str] | None = None,
        close_timeout: float = 10.0,
        retry_timeout: float | None = 120.0,
        context: Mapping[str, str | None] | None = None,
        ignored_loggers: Iterable[str] = DEFAULT_IGNORED_LOGGERS,
        sender: RowSender | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        if not dce_endpoint or not dcr_id:
            raise ValueError(
                "AzureMonitorHandler needs the Data Collection Endpoint URL and the rule's "
                "immutable id (AZURE_MONITOR_DATA_COLLECTION_ENDPOINT, "
                "AZURE_MONITOR_DATA_COLLECTION_RULE_ID)"
            )
        if batch_size < 1 or queue_size < 1 or flush_interval <= 0 or close_timeout < 0:
            raise ValueError(
                "batch_size and queue_size must be ≥ 1, flush_interval > 0, close_timeout ≥ 0"
            )
        from hal_logging.context import full_context, normalize_context
        from hal_logging.formatter import JsonFormatter

        self.dce_endpoint = dce_endpoint
        self.dcr_id = dcr_id
        self.stream_name = stream_name or STREAM_NAME
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.queue_size = queue_size
        self.close_timeout = float(close_timeout)
        self.retry_timeout = retry_timeout
        self.credential = credential
        self.spill_path = Path(spill_path) if spill_path else _default_spill_path(self.stream_name)
        self.refused_path = self.spill_path.with_name(self.spill_path.stem + ".refused.jsonl")
        self.resend_path = self.spill_path.with_name(self.spill_path.stem + ".resending.jsonl")
        self.context = full_context(
            normalize_context(context or {}, strict=False), default_log_type=LOG_TYPE_VM
        )
        self._ignored = tuple(ignored_loggers)
        self._row_formatter = JsonFormatter(context=self.context)
        self._given_sender = sender
        if sender is None:
            # Import the engine (and with it the Azure SDK) now, in the caller's
            # thread: never for the first time inside the sender thread, where an
            # import could wait on an import lock held by a thread waiting for us.
            import hal_logging.azure.uploader  # noqa: F401
        self._closed = False
        self._init_process_state()
        _live_handlers.add(self)

    # -- per-process state (rebuilt in a forked child) ------------------------

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.Queue[bytes] = queue.Queue(self.queue_size)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_all = threading.Event()  # flush(): send every queued row, not only full batches
        self._start_lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._inflight_lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._sender_ident: int | None = None
        self._sender: RowSender | None = None
        self._inflight: list[bytes] = []
        self._abandoned = False
        self._deadline: float | None = None
        self._spill_file: Any = None
        self._spill_announced = False
        self._failure_announced = False
        self._healthy = True  # the last send succeeded (or none was tried yet)
        self._spill_pending = 0  # rows in the spill file since it was last rotated
        self._backlog = 0  # spilled rows not delivered since (a count, for stats)
        self._resend_path: Path | None = None
        self._resend_offset = 0
        self._id_base = f"{uuid.uuid4().hex[:12]}-{self._pid:x}-"
        self._seq = itertools.count()
        self._enqueued = 0  # rows put on the queue (under _progress)
        self._emitted = 0  # rows made on the queue path (under _progress)
        self._settled = 0  # rows taken off and then sent, refused or spilled (under _progress)
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "emitted",
                "sent",
                "refused",
                "spilled",
                "recovered",
                "failed_sends",
                "not_queued",
                "errors",
                "lost",
            ),
            0,
        )

    def _after_fork_in_child(self) -> None:
        # The parent's queue, locks, thread and engine (its sockets) are not the
        # child's: start over. Rows the parent had queued are the parent's to send.
        self._init_process_state()

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._stats[key] += n

    def _make_sender(self) -> RowSender:
        if self._given_sender is not None:
            return self._given_sender
        return UploaderSender(
            self.dce_endpoint,
            self.dcr_id,
            self.stream_name,
            credential=self.credential,
            dead_letter=self.refused_path,
            retry_timeout=self.retry_timeout,
        )

    # -- logging.Handler API ----------------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter, then emit *without* the handler lock (see the module docstring)."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a new record
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record as a row; never waits on the network, never raises."""
        try:
            if self._not_for_queue(record):
                self._count("not_queued")
                return
            if self._pid != os.getpid():  # a fork the at-fork hook did not see
                self._init_process_state()
            line = self._wire_line(record)
            if self._closed or self._abandoned:
                self._count("emitted")
                self._spill([line])
                return
            if self._thread is None:
                self._start_sender()
            with self._progress:  # the one lock of the common path (with the queue's own)
                self._emitted += 1
                try:
                    self._queue.put_nowait(line)
                    self._enqueued += 1
                    queued = True
                except queue.Full:
                    queued = False
            if not queued:
                self._spill([line])
                self._wake.set()
            elif record.levelno >= _LEVEL_URGENT or len(self._queue.queue) >= self.batch_size:
                self._wake.set()
        except Exception:
            self._count("errors")

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every row queued so far was handed over (sent, refused or spilled).

        Bounded by ``timeout`` (default ``close_timeout``); True when done.
        Returns at once from a delivery thread (it would wait for itself), and
        returns False at once while this thread holds logging's module lock
        (``dictConfig`` does, when it shuts the old handlers down): the sender
        may need that lock to log, so waiting could only time out.
        """
        if self._thread is None or self._is_delivery_thread():
            return True
        if _holding_logging_lock():
            self._wake.set()
            return False
        limit = self.close_timeout if timeout is None else timeout
        with self._progress:
            target = self._enqueued
        self._flush_all.set()
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: self._settled >= target or self._abandoned, limit
            )

    def close(self) -> None:
        """Send what is queued (at most ``close_timeout`` s), spill the rest, stop. Idempotent."""
        if not self._closed and self._pid == os.getpid():
            self._closed = True
            if _holding_logging_lock():
                # dictConfig() closing old handlers: it holds logging's lock, which the
                # sender may need. Finish in the background once that lock is free.
                closer = threading.Thread(
                    target=self._shutdown_quietly, name="hal-logging-close", daemon=True
                )
                _closers.append((closer, self.close_timeout))
                closer.start()
            else:
                self._shutdown_quietly()
        _live_handlers.discard(self)
        super().close()

    def _shutdown_quietly(self) -> None:
        try:
            self._shutdown(self.close_timeout)
        except Exception:
            self._count("errors")

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start (or fork).

        ``emitted`` rows made; ``sent`` accepted by the service (spilled rows sent
        later included); ``refused`` rows the service refused (400), kept in
        ``refused_path``; ``spilled`` rows written to ``spill_path`` (queue full,
        service down, close timeout); ``recovered`` spilled rows sent later;
        ``backlog`` spilled rows not sent (yet); ``failed_sends`` sends the
        engine gave up on; ``not_queued`` records of
        delivery threads and ignored loggers (left to the other handlers);
        ``errors`` records that could not be formatted (not expected); ``lost``
        rows the spill file could not take (disk full: said on stderr);
        ``queued`` rows waiting now.
        """
        with self._count_lock:
            out = dict(self._stats)
            out["backlog"] = self._backlog
        with self._progress:
            out["emitted"] += self._emitted
        out["queued"] = self._queue.qsize()
        return out

    # -- emit helpers -------------------------------------------------------------

    def _is_delivery_thread(self) -> bool:
        if threading.get_ident() == self._sender_ident:
            return True
        return threading.current_thread().name.startswith(DELIVERY_THREAD_PREFIX)

    def _not_for_queue(self, record: logging.LogRecord) -> bool:
        name = record.name
        for prefix in self._ignored:
            if name.startswith(prefix) and (len(name) == len(prefix) or name[len(prefix)] == "."):
                return True
        return self._is_delivery_thread()

    def _wire_line(self, record: logging.LogRecord) -> bytes:
        """The record as a wire line: the container formatter's row, plus ``Properties.hal``.

        The formatter writes ``{"_hal":1, <columns>, "Properties":{...}}`` with
        Properties last, so ``hal`` is appended in place (no parse, no second
        dump); anything unexpected takes the parse-and-dump path.
        """
        line = self._row_formatter.format(record).encode("utf-8", "surrogatepass")
        seq = next(self._seq)
        hal = (
            b'"hal":{"stream":"unknown","record_id":"'
            + f"{self._id_base}{seq:x}".encode()
            + b'","format":"handler","offset":'
            + str(seq).encode()
            + b"}"
        )
        if line.startswith(WIRE_PREFIX) and b'"hal":' not in line:
            if line.endswith(_PROPS_EMPTY_END):
                return line[:-2] + hal + b"}}"
            if line.endswith(b"}}"):
                return line[:-2] + b"," + hal + b"}}"
        row = _json.loads(line)
        if not isinstance(row, dict):
            row = {"Message": _json.dumps_str(row)}
        row.pop(WIRE_VERSION_KEY, None)
        props = row.get("Properties")
        props = props if isinstance(props, dict) else ({} if props is None else {"value": props})
        props[PROP_HAL] = _json.loads(b"{" + hal + b"}")["hal"]
        row["Properties"] = props
        return _json.dumps({WIRE_VERSION_KEY: WIRE_VERSION, **row})

    # -- the sender thread ----------------------------------------------------------

    def _start_sender(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name=f"{DELIVERY_THREAD_PREFIX}sender-{id(self):x}", daemon=True
            )
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        self._sender_ident = threading.get_ident()
        try:
            self._sender = self._make_sender()
        except Exception as err:
            self._count("errors")
            self._announce(f"could not set up Azure Monitor delivery ({err}); rows are spilled")
        while not self._abandoned:
            # Wake on the timer, on batch_size rows, on ERROR+, on flush() and close();
            # each time send everything queued (the engine cuts it into 1 MiB requests),
            # then a chunk of the spill backlog -- at once while the service answers,
            # once per flush_interval while it does not.
            backlog = self._has_backlog()
            woke = self._wake.wait(0 if backlog and self._healthy else self.flush_interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            flushing = self._flush_all.is_set()
            self._flush_all.clear()
            self._drain_queue(everything=stopping or flushing)
            if stopping:
                while (
                    self._has_backlog()
                    and self._healthy
                    and not self._abandoned
                    and time.monotonic() < (self._deadline or 0.0)
                ):
                    self._send_backlog_chunk()
                    self._drain_queue(everything=True)
                break
            if backlog and (self._healthy or not woke) and not self._abandoned:
                self._send_backlog_chunk()
        rest = self._take(sys.maxsize, inflight=False)
        if rest:
            self._spill(rest)
            self._settle(len(rest))
        if not self._abandoned:
            self._park_backlog()

    def _drain_queue(self, everything: bool = False) -> None:
        """Send what is queued; after the first request, only full batches.

        A remainder smaller than ``batch_size`` waits for the next wake-up (the
        timer, ``batch_size`` rows, an ERROR, flush or close), so a busy logger
        fills requests instead of sending a few rows each time a request returns.
        """
        first = True
        while not self._abandoned:
            if not (first or everything) and len(self._queue.queue) < self.batch_size:
                return
            batch = self._take(_MAX_ROWS_PER_SEND)
            if not batch:
                return
            self._deliver(batch)
            first = False

    def _take(self, limit: int, inflight: bool = True) -> list[bytes]:
        batch: list[bytes] = []
        try:
            while len(batch) < limit:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if inflight:
            with self._inflight_lock:
                self._inflight = batch
        return batch

    def _settle(self, n: int) -> None:
        with self._progress:
            self._settled += n
            self._progress.notify_all()

    def _deliver(self, batch: list[bytes]) -> None:
        error: Exception | None = None
        result: Any = None
        try:
            if self._sender is None:
                raise RuntimeError("no delivery engine")
            result = self._sender.send(batch, self._get_deadline)
        except Exception as err:
            error = err
        with self._inflight_lock:
            claimed = self._inflight is not batch  # close() timed out and spilled it already
            self._inflight = []
        if claimed:
            return
        if error is None:
            self._delivered(len(batch), result)
        else:
            self._failed(error)
            self._spill(batch)
        self._settle(len(batch))

    def _delivered(self, n: int, result: Any) -> None:
        self._healthy = True
        refused = int(getattr(result, "dead_lettered", 0) or 0)
        self._count("sent", n - refused)
        if refused:
            self._count("refused", refused)

    def _failed(self, error: BaseException) -> None:
        self._healthy = False
        self._count("failed_sends")
        if not self._failure_announced:
            self._failure_announced = True
            self._announce(f"sending to Azure Monitor failed: {type(error).__name__}: {error}")

    # -- the spill backlog: sent again when the service answers ------------------------

    def _has_backlog(self) -> bool:
        return self._resend_path is not None or self._spill_pending > 0

    def _send_backlog_chunk(self) -> None:
        """Send the next rows of the spill backlog (sender thread only)."""
        if self._resend_path is None:
            with self._spill_lock:
                if self._spill_pending == 0:
                    return
                self._close_spill_file()
                try:
                    os.replace(self.spill_path, self.resend_path)
                except OSError:
                    self._count("errors")
                    return
                self._spill_pending = 0
            self._resend_path = self.resend_path
            self._resend_offset = 0
        lines, end = _read_lines(self._resend_path, self._resend_offset, _MAX_ROWS_PER_SEND)
        if not lines:
            with contextlib.suppress(OSError):
                self._resend_path.unlink()
            self._resend_path = None
            return
        try:
            if self._sender is None:
                raise RuntimeError("no delivery engine")
            result = self._sender.send(lines, self._get_deadline)
        except Exception as err:
            self._failed(err)
            return
        self._resend_offset = end
        self._delivered(len(lines), result)
        self._count("recovered", len(lines))
        with self._count_lock:
            self._backlog = max(0, self._backlog - len(lines))

    def _park_backlog(self) -> None:
        """At exit: put the unsent rest of the backlog back at the head of the spill file."""
        resend = self._resend_path
        if resend is None:
            return
        with self._spill_lock:
            self._close_spill_file()
            tmp = self.spill_path.with_name(self.spill_path.name + ".tmp")
            try:
                with open(tmp, "wb") as out:
                    with open(resend, "rb") as src:
                        src.seek(self._resend_offset)
                        shutil.copyfileobj(src, out)
                    if self.spill_path.exists():
                        with open(self.spill_path, "rb") as src:
                            shutil.copyfileobj(src, out)
                os.replace(tmp, self.spill_path)
                resend.unlink()
            except OSError as err:
                self._announce(
                    f"could not merge {resend} into {self.spill_path} ({err}); both kept"
                )
            self._resend_path = None

    def _get_deadline(self) -> float | None:
        """Read by the engine between retries: set when close() starts."""
        return self._deadline

    def _shutdown(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        thread = self._thread
        self._stopping.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                # The sender is stuck in a request: give up on it. Its batch and the
                # queue are spilled; it exits without sending anything more.
                self._abandoned = True
                with self._inflight_lock:
                    inflight, self._inflight = self._inflight, []
                rest = self._take(sys.maxsize, inflight=False)
                self._spill([*inflight, *rest])
                self._settle(len(inflight) + len(rest))
        elif thread is None:
            rest = self._take(sys.maxsize, inflight=False)
            self._spill(rest)
            self._settle(len(rest))
        sender = self._sender
        if sender is not None and not self._abandoned:
            try:
                sender.close()
            except Exception:
                self._count("errors")
        with self._spill_lock:
            self._close_spill_file()
        left = self.stats["backlog"]
        if left:
            where = str(self.spill_path)
            if self._resend_path is not None:
                where += f" and {self._resend_path} (partly sent already)"
            self._announce(
                f"{left} log rows were not delivered to Azure Monitor; they are kept in {where}: "
                f"send them with `hal-logging-forward --resend {self.spill_path}`"
            )

    # -- spilling -------------------------------------------------------------------

    def _spill(self, lines: Sequence[bytes]) -> None:
        """Append wire lines to the spill file (never raises)."""
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        with self._spill_lock:
            try:
                if self._spill_file is None:
                    self.spill_path.parent.mkdir(parents=True, exist_ok=True)
                    self._spill_file = open(self.spill_path, "ab")  # kept open
                self._spill_file.write(data)
                self._spill_file.flush()
            except OSError as err:
                self._count("lost", len(lines))
                self._announce(
                    f"could not write the spill file {self.spill_path} ({err}); "
                    f"{len(lines)} log rows lost"
                )
                return
            self._spill_pending += len(lines)
            with self._count_lock:
                self._stats["spilled"] += len(lines)
                self._backlog += len(lines)
            first = not self._spill_announced
            self._spill_announced = True
        if first:
            self._announce(
                "Azure Monitor is unreachable or not keeping up: log rows are being saved to "
                f"{self.spill_path} and sent from there once it answers again; rows still "
                f"there at exit can be sent with `hal-logging-forward --resend {self.spill_path}`"
            )

    def _close_spill_file(self) -> None:
        """Close the spill file handle (caller holds ``_spill_lock``)."""
        if self._spill_file is not None:
            with contextlib.suppress(OSError):
                self._spill_file.close()
            self._spill_file = None

    @staticmethod
    def _announce(text: str) -> None:
        """One line on stderr: not through logging, which would feed this handler."""
        try:
            stream = sys.stderr or sys.__stderr__
            if stream is not None:
                stream.write(f"hal-logging: {text}\n")
                stream.flush()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<AzureMonitorHandler {self.stream_name} ({logging.getLevelName(self.level)})>"


# ---------------------------------------------------------------------------
# Process-wide hooks: fork and interpreter exit.
# ---------------------------------------------------------------------------

_live_handlers: weakref.WeakSet[AzureMonitorHandler] = weakref.WeakSet()
#: close() calls finishing in the background (see close()); exit waits for them.
_closers: list[tuple[threading.Thread, float]] = []


def _reinit_after_fork() -> None:
    _closers.clear()
    for handler in list(_live_handlers):
        try:
            handler._after_fork_in_child()
        except Exception:
            pass


def _close_all_at_exit() -> None:
    """Flush and close every live handler, each bounded by its own close_timeout.

    Runs before ``logging.shutdown`` (registered earlier with ``atexit``, which
    is last-in, first-out); closing twice is harmless.
    """
    for handler in list(_live_handlers):
        try:
            handler.close()
        except Exception:
            pass
    while _closers:
        closer, timeout = _closers.pop()
        closer.join(timeout + 1.0)


os.register_at_fork(after_in_child=_reinit_after_fork)
# Interpreter exit. ``concurrent.futures`` refuses new work once its own exit hook
# has run, and the engine sends through a thread pool; that hook is registered
# with ``threading._register_atexit``, whose hooks run (last-in, first-out) when
# the main thread ends, before ``atexit``'s. So ours goes there too, registered
# after concurrent.futures' (imported above), to run before it. ``atexit`` is the
# fallback, and a second chance for records logged later (closing is idempotent;
# rows logged after close go to the spill file).
_register_threading_atexit = getattr(threading, "_register_atexit", None)
if _register_threading_atexit is not None:
    try:
        _register_threading_atexit(_close_all_at_exit)
    except RuntimeError:  # already shutting down
        pass
atexit.register(_close_all_at_exit)
