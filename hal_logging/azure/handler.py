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

This module is the logging face: arguments, ``emit`` (a record into a wire
line), ``flush``/``close``/``stats``. The queue, the thread and closing are
:mod:`hal_logging.azure.sender`; the spill file and its backlog
:mod:`hal_logging.azure.spill`; the engine adapter
:mod:`hal_logging.azure.rowsender`; exit and fork hooks
:mod:`hal_logging.azure.lifecycle`.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from hal_logging import _json
from hal_logging.azure import lifecycle
from hal_logging.azure.rowsender import RowSender, UploaderSender
from hal_logging.azure.sender import Sender
from hal_logging.azure.spill import default_spill_path
from hal_logging.schema import (
    LOG_TYPE_VM,
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
_LEVEL_URGENT: Final = logging.ERROR
_PROPS_EMPTY_END: Final = b'"Properties":{}}'


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
        self.spill_path = Path(spill_path) if spill_path else default_spill_path(self.stream_name)
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
        lifecycle.register(self)

    # -- per-process state (rebuilt in a forked child) ------------------------

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._sender = Sender(
            batch_size=self.batch_size,
            flush_interval=self.flush_interval,
            queue_size=self.queue_size,
            close_timeout=self.close_timeout,
            spill_path=self.spill_path,
            make_engine=self._make_sender,
            owner=self,
        )
        self._id_base = f"{uuid.uuid4().hex[:12]}-{self._pid:x}-"
        self._seq = itertools.count()

    def _after_fork_in_child(self) -> None:
        # The parent's queue, locks, thread and engine (its sockets) are not the
        # child's: start over. Rows the parent had queued are the parent's to send.
        self._init_process_state()

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
                self._sender.count("not_queued")
                return
            if self._pid != os.getpid():  # a fork the at-fork hook did not see
                self._init_process_state()
            line = self._wire_line(record)
            self._sender.put(line, record.levelno >= _LEVEL_URGENT, self._closed)
        except Exception:
            self._sender.count("errors")

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every row queued so far was handed over (sent, refused or spilled).

        Bounded by ``timeout`` (default ``close_timeout``); True when done.
        Returns at once from a delivery thread (it would wait for itself), and
        returns False at once while this thread holds logging's module lock
        (``dictConfig`` does, when it shuts the old handlers down): the sender
        may need that lock to log, so waiting could only time out.
        """
        return self._sender.flush(self.close_timeout if timeout is None else timeout)

    def close(self) -> None:
        """Send what is queued (at most ``close_timeout`` s), spill the rest, stop. Idempotent."""
        if not self._closed and self._pid == os.getpid():
            self._closed = True
            self._sender.close()
        lifecycle.unregister(self)
        super().close()

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
        return self._sender.stats()

    # -- emit helpers -------------------------------------------------------------

    def _not_for_queue(self, record: logging.LogRecord) -> bool:
        name = record.name
        for prefix in self._ignored:
            if name.startswith(prefix) and (len(name) == len(prefix) or name[len(prefix)] == "."):
                return True
        return self._sender.is_delivery_thread()

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

    def __repr__(self) -> str:
        return f"<AzureMonitorHandler {self.stream_name} ({logging.getLevelName(self.level)})>"
