"""The logging handler's sender: a bounded queue, one thread that empties it, flush, close and fork.

The part of :class:`~hal_logging.azure.handler.AzureMonitorHandler` that is not
``logging``: rows (wire lines) come in through :meth:`Sender.put`, which never
waits; one daemon thread per process hands them to a delivery engine
(:class:`RowSender`) and keeps what it cannot deliver in the spill file
(:mod:`hal_logging.azure.spill`), whose backlog it sends again once the
service answers.

the thread (started on the first row)
    wakes every ``flush_interval`` seconds, when ``batch_size`` rows are
    waiting, and at once for urgent rows (ERROR and above); it sends
    everything queued (the engine cuts it into 1 MiB requests), then a chunk
    of the spill backlog -- at once while the service answers, once per
    ``flush_interval`` while it does not.

close / exit
    :meth:`Sender.close` asks the thread to send what is queued and waits at
    most ``close_timeout`` seconds; what is left is spilled. A thread stuck in
    a request is abandoned (its batch spilled too). Called while the caller
    holds logging's module lock (``dictConfig`` replacing handlers), it does
    not wait: the thread may need that lock to log, so closing finishes in the
    background, and the exit hook waits for it
    (:mod:`hal_logging.azure.lifecycle`, which also gives a forked child a new
    sender: a sender belongs to one process).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from hal_logging.azure import lifecycle
from hal_logging.azure.rowsender import RowSender
from hal_logging.azure.spill import Spill

__all__ = ["DELIVERY_THREAD_PREFIX", "Sender", "announce"]

#: Threads that deliver rows: ours ("hal-azure-sender-..."), and the engine's request
#: and batch pools ("hal-azure-req", "hal-azure-batch"). Their records are never queued.
DELIVERY_THREAD_PREFIX: Final = "hal-azure-"
#: Most rows handed to the engine in one call (it cuts them into ≤ 1 MiB requests).
MAX_ROWS_PER_SEND: Final = 5000


def announce(text: str) -> None:
    """One line on stderr: not through logging, which would feed the handler."""
    try:
        stream = sys.stderr or sys.__stderr__
        if stream is not None:
            stream.write(f"hal-logging: {text}\n")
            stream.flush()
    except Exception:
        pass


STAT_KEYS: Final = (
    "emitted",
    "sent",
    "refused",
    "spilled",
    "recovered",
    "failed_sends",
    "not_queued",
    "errors",
    "lost",
)


class Sender:
    """One process's queue, thread and spill for one handler (see the module docstring).

    ``make_engine`` builds the :class:`RowSender` on the thread's start (so a
    failure there is counted and the rows spilled, never raised into logging).
    ``owner`` (the handler) is kept alive by the running thread, as a thread
    running the handler's own method would.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        flush_interval: float,
        queue_size: int,
        close_timeout: float,
        spill_path: Path,
        make_engine: Callable[[], RowSender],
        owner: object,
    ) -> None:
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.close_timeout = close_timeout
        self.spill = Spill(spill_path)
        self._make_engine = make_engine
        self._owner = owner
        self._queue: queue.Queue[bytes] = queue.Queue(queue_size)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_all = threading.Event()  # flush(): send every queued row, not only full batches
        self._start_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._inflight_lock = threading.Lock()
        self._progress = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._thread_ident: int | None = None
        self._engine: RowSender | None = None
        self._inflight: list[bytes] = []
        self.abandoned = False
        self._deadline: float | None = None
        self._spill_announced = False
        self._failure_announced = False
        self._healthy = True  # the last send succeeded (or none was tried yet)
        self._backlog = 0  # spilled rows not delivered since (a count, for stats)
        self._enqueued = 0  # rows put on the queue (under _progress)
        self._emitted = 0  # rows made on the queue path (under _progress)
        self._settled = 0  # rows taken off and then sent, refused or spilled (under _progress)
        self._stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)

    # -- the handler's side ----------------------------------------------------------

    def count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._stats[key] += n

    def is_delivery_thread(self) -> bool:
        if threading.get_ident() == self._thread_ident:
            return True
        return threading.current_thread().name.startswith(DELIVERY_THREAD_PREFIX)

    def put(self, line: bytes, urgent: bool, closed: bool) -> None:
        """Queue a wire line (spill it when the queue is full or the handler closed); never waits."""
        if closed or self.abandoned:
            self.count("emitted")
            self._spill([line])
            return
        if self._thread is None:
            self._start()
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
        elif urgent or len(self._queue.queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every row queued so far was handed over; see ``AzureMonitorHandler.flush``."""
        if self._thread is None or self.is_delivery_thread():
            return True
        if lifecycle.holding_logging_lock():
            self._wake.set()
            return False
        with self._progress:
            target = self._enqueued
        self._flush_all.set()
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: self._settled >= target or self.abandoned, timeout
            )

    def close(self) -> None:
        """Send what is queued (at most ``close_timeout`` s), spill the rest, stop."""
        if lifecycle.holding_logging_lock():
            # dictConfig() closing old handlers: it holds logging's lock, which the
            # thread may need. Finish in the background once that lock is free.
            lifecycle.close_later(self._shutdown_quietly, self.close_timeout)
        else:
            self._shutdown_quietly()

    def stats(self) -> dict[str, int]:
        with self._count_lock:
            out = dict(self._stats)
            out["backlog"] = self._backlog
        with self._progress:
            out["emitted"] += self._emitted
        out["queued"] = self._queue.qsize()
        return out

    # -- the thread ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run,
                name=f"{DELIVERY_THREAD_PREFIX}sender-{id(self._owner):x}",
                daemon=True,
            )
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        try:
            self._engine = self._make_engine()
        except Exception as err:
            self.count("errors")
            announce(f"could not set up Azure Monitor delivery ({err}); rows are spilled")
        spill = self.spill
        while not self.abandoned:
            # Wake on the timer, on batch_size rows, on ERROR+, on flush() and close();
            # each time send everything queued (the engine cuts it into 1 MiB requests),
            # then a chunk of the spill backlog -- at once while the service answers,
            # once per flush_interval while it does not.
            backlog = spill.has_backlog()
            woke = self._wake.wait(0 if backlog and self._healthy else self.flush_interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            flushing = self._flush_all.is_set()
            self._flush_all.clear()
            self._drain_queue(everything=stopping or flushing)
            if stopping:
                while (
                    spill.has_backlog()
                    and self._healthy
                    and not self.abandoned
                    and time.monotonic() < (self._deadline or 0.0)
                ):
                    self._send_backlog_chunk()
                    self._drain_queue(everything=True)
                break
            if backlog and (self._healthy or not woke) and not self.abandoned:
                self._send_backlog_chunk()
        rest = self._take(sys.maxsize, inflight=False)
        if rest:
            self._spill(rest)
            self._settle(len(rest))
        if not self.abandoned:
            error = spill.park()
            if error:
                announce(error)

    def _drain_queue(self, everything: bool = False) -> None:
        """Send what is queued; after the first request, only full batches.

        A remainder smaller than ``batch_size`` waits for the next wake-up (the
        timer, ``batch_size`` rows, an ERROR, flush or close), so a busy logger
        fills requests instead of sending a few rows each time a request returns.
        """
        first = True
        while not self.abandoned:
            if not (first or everything) and len(self._queue.queue) < self.batch_size:
                return
            batch = self._take(MAX_ROWS_PER_SEND)
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
            if self._engine is None:
                raise RuntimeError("no delivery engine")
            result = self._engine.send(batch, self._get_deadline)
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
        self.count("sent", n - refused)
        if refused:
            self.count("refused", refused)

    def _failed(self, error: BaseException) -> None:
        self._healthy = False
        self.count("failed_sends")
        if not self._failure_announced:
            self._failure_announced = True
            announce(f"sending to Azure Monitor failed: {type(error).__name__}: {error}")

    def _send_backlog_chunk(self) -> None:
        """Send the next rows of the spill backlog (the thread only)."""
        try:
            chunk = self.spill.next_chunk(MAX_ROWS_PER_SEND)
        except OSError:
            self.count("errors")
            return
        if not chunk or not chunk[0]:
            return
        lines, end = chunk
        try:
            if self._engine is None:
                raise RuntimeError("no delivery engine")
            result = self._engine.send(lines, self._get_deadline)
        except Exception as err:
            self._failed(err)
            return
        self.spill.advance(end)
        self._delivered(len(lines), result)
        self.count("recovered", len(lines))
        with self._count_lock:
            self._backlog = max(0, self._backlog - len(lines))

    def _get_deadline(self) -> float | None:
        """Read by the engine between retries: set when close() starts."""
        return self._deadline

    def _shutdown_quietly(self) -> None:
        try:
            self._shutdown(self.close_timeout)
        except Exception:
            self.count("errors")

    def _shutdown(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        thread = self._thread
        self._stopping.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                # The thread is stuck in a request: give up on it. Its batch and the
                # queue are spilled; it exits without sending anything more.
                self.abandoned = True
                with self._inflight_lock:
                    inflight, self._inflight = self._inflight, []
                rest = self._take(sys.maxsize, inflight=False)
                self._spill([*inflight, *rest])
                self._settle(len(inflight) + len(rest))
        elif thread is None:
            rest = self._take(sys.maxsize, inflight=False)
            self._spill(rest)
            self._settle(len(rest))
        engine = self._engine
        if engine is not None and not self.abandoned:
            try:
                engine.close()
            except Exception:
                self.count("errors")
        with self.spill.lock:
            self.spill.close_file()
        left = self.stats()["backlog"]
        if left:
            path = self.spill.path
            where = str(path)
            if self.spill.resending is not None:
                where += f" and {self.spill.resending} (partly sent already)"
            announce(
                f"{left} log rows were not delivered to Azure Monitor; they are kept in {where}: "
                f"send them with `hal-logging-forward --resend {path}`"
            )

    def _spill(self, lines: Sequence[bytes]) -> None:
        """Append wire lines to the spill file (never raises)."""
        if not lines:
            return
        path = self.spill.path
        first = False

        def counted(n: int) -> None:  # under the spill file's lock
            nonlocal first
            with self._count_lock:
                self._stats["spilled"] += n
                self._backlog += n
            first = not self._spill_announced
            self._spill_announced = True

        try:
            self.spill.write(lines, counted)
        except OSError as err:
            self.count("lost", len(lines))
            announce(f"could not write the spill file {path} ({err}); {len(lines)} log rows lost")
            return
        if first:
            announce(
                "Azure Monitor is unreachable or not keeping up: log rows are being saved to "
                f"{path} and sent from there once it answers again; rows still "
                f"there at exit can be sent with `hal-logging-forward --resend {path}`"
            )
