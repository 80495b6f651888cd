"""The pipeline loop: source -> framing -> parsing -> filters -> batching -> sink -> checkpoint.

One thread reads, frames, parses, filters and batches; a few delivery threads
(``sink.max_in_flight``) write batches concurrently; checkpoints are committed
by the reading thread strictly in batch order, and only for batches the sink
confirmed. The invariants that make "nothing lost, nothing twice" hold:

* A checkpoint offset never passes a byte whose record is not yet confirmed:
  marks are computed at chunk boundaries from the end of the last framed line,
  held back to ``Parser.held_start`` (an open multi-line group) and to any row a
  filter holds (``held_starts``), and committed only when this batch and every
  batch before it are delivered.
* Records dropped by filters are behind the mark like any other, so the
  checkpoint moves past them once everything before them is delivered.
* On a DeliveryError the loop stops delivering: later batches may still land,
  but the checkpoint stays at the last fully delivered prefix, so a rerun
  re-sends (never skips); the local workspace ignores the re-sent ids.
* The final flush is bounded by ``--drain-timeout`` (``sink.deadline``);
  whatever is not confirmed by then is counted as undelivered, and the summary
  says where it is kept.

Checkpoint cadence. For a remote sink (:data:`COMMIT_EVERY_BATCH`: Azure,
OTLP) the checkpoint is committed as soon as a batch is confirmed: rows
confirmed but not yet checkpointed are re-sent after a SIGKILL, and there a
re-sent row is a paid duplicate (Azure does not de-duplicate) of a row whose
outcome was known. One atomic write+fsync per confirmed ~1 MB batch is small
beside the HTTPS request that confirmed it. For the local sinks the writes
are coalesced to one per :data:`CHECKPOINT_INTERVAL`: the SQLite workspace
ignores re-sent record ids (a lag costs nothing), batches there are
confirmed in milliseconds, so an fsync per batch would be a real share of
the work, and jsonl/dry-run outputs are not billed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from hal_logging import schema
from hal_logging.context import full_context
from hal_logging.pipeline.batching import Batch, Batcher
from hal_logging.pipeline.checkpoint import CheckpointStore
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import DeliveryError, Filter, Record, Sink, WriteResult
from hal_logging.pipeline.outcome import (  # EXIT_UNDELIVERED: re-exported
    COMMAND_CANNOT_EXECUTE,
    COMMAND_NOT_FOUND,
    EXIT_UNDELIVERED,  # noqa: F401
)
from hal_logging.pipeline.parsing import Parser, record_id
from hal_logging.pipeline.sources import (
    Chunk,
    Closed,
    Event,
    ExitStatusSource,
    FileInput,
    Idle,
    LifetimeSource,
    Opened,
    Source,
)
from hal_logging.pipeline.summary import RunStats

if TYPE_CHECKING:  # (annotations only: the runner reads its components' settings)
    from hal_logging.pipeline.config import ForwardConfig
    from hal_logging.pipeline.settings import DeliveryConfig, InputsConfig

FORWARDER_LOGGER = "hal_logging.forward"
#: Seconds between checkpoint writes while running, for local sinks (always
#: written at the end); see "Checkpoint cadence" above.
CHECKPOINT_INTERVAL = 1.0
#: Sinks whose checkpoint is committed after every confirmed batch (re-sent
#: rows are paid duplicates there).
COMMIT_EVERY_BATCH: frozenset[str] = frozenset(("azure", "otlp"))


def trusted_context(
    config: ForwardConfig, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Context the VM side vouches for: flags, then the VM's environment, then CMD's ``-e``.

    A value the command is given with ``-e HAL_RUN_ID=...`` was chosen by the
    VM side too, so it counts when neither a flag nor the environment set it.
    Only non-empty values are returned (the parser's contract).
    """
    env = dict(os.environ if environ is None else environ)
    merged = {
        **{k: v for k, v in config.command_env.items() if v},
        **{k: v for k, v in env.items() if v},
    }
    ctx = full_context(config.context, environ=merged)
    if not ctx.get("VMName"):
        # On an Azure VM the VM's own name is known for sure (IMDS); off Azure
        # this is two small file reads and no network call.
        from hal_logging.azure.vm import trusted_vm_name

        ctx["VMName"] = trusted_vm_name() or ""
    return {k: v for k, v in ctx.items() if v}


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: Allocations between young-generation collections while a runner runs
#: (CPython's default is 700): more than a batch's rows make while they wait,
#: so most rows are freed (by reference counting) before any collection.
GC_YOUNG_THRESHOLD = 200_000


@contextlib.contextmanager
def _gc_for_throughput() -> Iterator[None]:
    """Garbage collection tuned for a pipeline of short-lived, acyclic rows.

    Rows are dicts of strings (no reference cycles: reference counting frees
    them), but each is a few container objects, so the cyclic collector runs
    every hundred rows and keeps re-scanning the thousands that wait in
    batches, and the interpreter's own objects (modules, functions) on every
    full collection. Measured: 10% of the forwarder's CPU. While a runner
    runs: what exists at its start is frozen (not scanned; it is not garbage),
    and young collections run after :data:`GC_YOUNG_THRESHOLD` allocations, by
    when most rows are gone. Cyclic garbage (rare here) is still collected.
    Both settings are undone at the end.
    """
    if not gc.isenabled():
        yield
        return
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(old[0], GC_YOUNG_THRESHOLD), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class _Gen:
    """State of one source generation (a file, a truncated file's new life, a pipe)."""

    __slots__ = ("closed", "file", "framer", "last_end", "parser", "sealed", "source", "stream")

    def __init__(self, ev: Opened, parser: Parser) -> None:
        self.stream = ev.stream
        self.source = ev.source
        self.file: FileInput | None = ev.file
        self.framer = Framer(ev.stream, ev.start)
        self.parser = parser
        self.last_end = ev.start
        self.sealed = ev.start
        self.closed = False

    def safe_offset(self, fold_held: Mapping[tuple[str, str], int]) -> int:
        off = self.last_end
        held = self.parser.held_start
        if held is not None and held < off:
            off = held
        fh = fold_held.get((self.source, self.stream))
        if fh is not None and fh < off:
            off = fh
        return off


class _Delivery:
    """A small pool of daemon threads calling ``sink.write`` (daemon: a stuck write
    never keeps the process alive past the drain deadline)."""

    def __init__(self, sink: Sink, workers: int) -> None:
        self.sink = sink
        self._q: queue.SimpleQueue[tuple[Batch, Future[WriteResult]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"hal-deliver-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self.sink.write(batch.records))
            except BaseException as exc:
                fut.set_exception(exc)

    def submit(self, batch: Batch) -> Future[WriteResult]:
        fut: Future[WriteResult] = Future()
        if not batch.records:
            fut.set_result(WriteResult())
        else:
            self._q.put((batch, fut))
        return fut

    def shutdown(self) -> None:
        for _ in self._threads:
            self._q.put(None)


class Runner:
    """Runs one forwarder pipeline to completion; see the module docstring."""

    def __init__(
        self,
        inputs: InputsConfig,
        delivery: DeliveryConfig,
        source: Source,
        sink: Sink,
        *,
        trusted: Mapping[str, str],
        filters: list[Filter],
        stats: RunStats | None = None,
        progress: Callable[[int], None] | None = None,
        abort: threading.Event | None = None,
    ) -> None:
        self.inputs = inputs  # how the source's bytes are parsed
        self.delivery = delivery  # batching, checkpoints, the drain
        self.source = source
        self.sink = sink
        self.trusted = dict(trusted)
        self.filters = filters
        self.stats = stats or RunStats()
        self.stats.mode = source.mode
        self.stats.sink = sink.name
        self.progress = progress
        self.abort = abort or threading.Event()
        self.live = source.mode in ("follow", "wrap", "container", "journal")
        self.commit_checkpoints = not (delivery.dry_run or delivery.no_checkpoint)
        self.batcher = Batcher(
            delivery.batch_rows, delivery.batch_bytes, delivery.flush_interval, sink.batch_bytes
        )
        self.gens: dict[str, _Gen] = {}
        self.failure: BaseException | None = None
        self._inflight: deque[tuple[Batch, Future[WriteResult]]] = deque()
        self._max_inflight = max(1, sink.max_in_flight) + 1
        self._delivery = _Delivery(sink, max(1, sink.max_in_flight))
        self._dirty_since: float | None = None
        self._fold_aware = [f for f in filters if f.holds_records()]
        self._undelivered_batches: list[Batch] = []
        self._log_type = self.trusted.get("LogType", schema.LOG_TYPE_AGENT)
        #: The trusted context the parser enforces on the source's rows. LogType
        #: VMOperation is the VM side's own rows' (this forwarder's): an
        #: environment that sets it for them (HAL_LOG_TYPE) must not lend it to
        #: container output.
        self._source_trusted = self.trusted
        if self._log_type == schema.LOG_TYPE_VM:
            self._log_type = schema.LOG_TYPE_AGENT
            self._source_trusted = {k: v for k, v in self.trusted.items() if k != "LogType"}
        self.on_undelivered: Callable[[list[Record]], None] | None = None
        self._stores: dict[str, CheckpointStore] = {}
        self._pending_marks: dict[str, dict[str, dict[str, Any]]] = {}
        self._last_commit = time.monotonic()
        self._commit_interval = 0.0 if sink.name in COMMIT_EVERY_BATCH else CHECKPOINT_INTERVAL
        self._final = False
        self._resend_parsers: list[Parser] = []
        self._prepare = sink.prepares()
        self._encode = sink.encodes_rows()
        #: Filters that look at each chunk of source bytes first (redaction's
        #: trigger scan, see RedactFilter.prescan).
        self._prescans: list[Callable[[str, str, bytes, int], None]] = [
            f.prescan for f in filters if f.prescans()
        ]

    # -- records ---------------------------------------------------------------

    def _filter(self, recs: list[Record]) -> list[Record]:
        for f in self.filters:
            recs = f.process_batch(recs)
            if not recs:
                break
        return recs

    def _flush_filters(self) -> list[Record]:
        out: list[Record] = []
        for i, f in enumerate(self.filters):
            released = list(f.flush())
            if released:
                rest = self.filters[i + 1 :]
                for g in rest:
                    nxt: list[Record] = []
                    for r in released:
                        nxt.extend(g.process(r))
                    released = nxt
                out.extend(released)
        return out

    def _accept(self, recs: Iterable[Record], now: float) -> None:
        if not isinstance(recs, list):
            recs = list(recs)
        if self.filters:
            recs = self._filter(recs)
        if not recs:
            return
        nbytes = self.stats.add_records(recs, self.sink.row_encoder() if self._encode else None)
        if self.failure is not None:
            self._keep_undelivered(recs)
            return
        sink_bytes = self.sink.prepare(recs) if self._prepare else None
        self.batcher.add(recs, now, nbytes, sink_bytes)

    # -- batches and checkpoints ---------------------------------------------------

    def _marks(self) -> dict[str, dict[str, dict[str, Any]]]:
        if not self.commit_checkpoints:
            return {}
        fold_held: dict[tuple[str, str], int] = {}
        for f in self._fold_aware:
            for key, off in f.held_starts().items():
                if key not in fold_held or off < fold_held[key]:
                    fold_held[key] = off
        marks: dict[str, dict[str, dict[str, Any]]] = {}
        for g in self.gens.values():
            if g.file is None or g.file.store is None:
                continue
            off = g.safe_offset(fold_held)
            if off == g.sealed and not g.closed:
                continue
            g.sealed = off
            marks.setdefault(str(g.file.store.path), {})[g.file.path] = g.file.entry(g.source, off)
        return marks

    def _seal(self, now: float, *, flush_filters: bool = False) -> None:
        if flush_filters and self.filters:
            self._accept(self._flush_filters(), now)
        if self.failure is not None:
            return
        batch = self.batcher.take()
        batch.marks = self._marks()
        self._dirty_since = None
        for key in [k for k, g in self.gens.items() if g.closed]:
            g = self.gens.pop(key)
            if g.file is not None:
                g.file.close()
        if not batch.records and not batch.marks:
            return
        self._submit(batch)

    def _submit(self, batch: Batch) -> None:
        while len(self._inflight) >= self._max_inflight and self.failure is None:
            self._wait_oldest(0.25)
            self._reap()
        if self.failure is not None:
            self._keep_undelivered(batch.records)
            return
        self._inflight.append((batch, self._delivery.submit(batch)))
        self._reap()

    def _wait_oldest(self, timeout: float) -> None:
        with contextlib.suppress(Exception):
            self._inflight[0][1].exception(timeout=timeout)

    def _reap(self) -> None:
        while self._inflight and self._inflight[0][1].done():
            batch, fut = self._inflight.popleft()
            exc = fut.exception()
            if exc is not None:
                self._fail(batch, exc)
                continue
            if self.failure is not None:
                # Delivered, but an earlier batch failed: counted, checkpoint not moved.
                self._count_result(fut.result())
                continue
            self._count_result(fut.result())
            for store_path, entries in batch.marks.items():
                self._pending_marks.setdefault(store_path, {}).update(entries)
        if self._pending_marks and (
            self._final or time.monotonic() - self._last_commit >= self._commit_interval
        ):
            self._commit_marks()

    def _commit_marks(self) -> None:
        """Write confirmed marks: after every confirmed batch for a remote sink,
        else coalesced to one write per CHECKPOINT_INTERVAL (a lagging checkpoint
        is safe there: a rerun re-sends, the ids dedupe; and the fsyncs stay off
        the reading thread's hot path). See "Checkpoint cadence" above."""
        pending, self._pending_marks = self._pending_marks, {}
        for store_path, entries in pending.items():
            self._store(store_path, entries)
        self._last_commit = time.monotonic()

    def _store(self, store_path: str, entries: dict[str, dict[str, Any]]) -> None:
        store = self._stores.get(store_path)
        if store is None:  # pragma: no cover - every mark comes from a registered store
            return
        try:
            store.commit(entries)
        except OSError as exc:
            self.failure = self.failure or exc
            self.stats.notes.append(
                f"cannot write checkpoint {store_path}: {exc.strerror}; delivery stopped "
                "(rows delivered since the last checkpoint will be re-sent by a rerun)"
            )

    def _count_result(self, res: WriteResult) -> None:
        self.stats.delivered += res.delivered
        self.stats.duplicates += res.duplicates
        self.stats.dead_lettered += res.dead_lettered
        for n in res.notes:
            if n not in self.stats.notes:
                self.stats.notes.append(n)

    def _fail(self, batch: Batch, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            msg = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            self.stats.notes.append(f"delivery stopped: {msg}")
        self._keep_undelivered(batch.records)

    def _keep_undelivered(self, recs: list[Record]) -> None:
        self.stats.undelivered += len(recs)
        if self.on_undelivered is not None and recs:
            self.on_undelivered(recs)

    # -- the loop ----------------------------------------------------------------

    def _open(self, ev: Opened) -> None:
        parser = Parser(
            stream=ev.stream,
            source=ev.source,
            trusted=self._source_trusted,
            input_format=self.inputs.input_format,
            multiline_timeout=self.inputs.multiline_timeout,
            log_type=self._log_type,
            resend=self.inputs.resend,
            # A source that knows when its writer started (a wrapped command):
            # wire-line times before that are claims (Parser: not_before).
            not_before=self.source.lifetime_start
            if isinstance(self.source, LifetimeSource)
            else None,
        )
        if self.inputs.resend:
            self._resend_parsers.append(parser)
        self.gens[ev.gen] = _Gen(ev, parser)
        if ev.file is not None and ev.file.store is not None:
            self._stores.setdefault(str(ev.file.store.path), ev.file.store)

    def run(self) -> RunStats:
        with _gc_for_throughput():
            return self._run()

    def _run(self) -> RunStats:
        stats = self.stats
        src_iter: Iterator[Event] = iter(self.source.events())
        clock = time.monotonic
        wall = time.time
        try:
            for ev in src_iter:
                now = clock()
                if isinstance(ev, Chunk):
                    g = self.gens[ev.gen]
                    n = len(ev.data)
                    stats.bytes_read += n
                    for prescan in self._prescans:
                        prescan(g.source, g.parser.stream, ev.data, g.framer.offset)
                    lines = g.framer.feed(ev.data, wall() if ev.time is None else ev.time)
                    if lines:
                        stats.lines += len(lines)
                        g.last_end = lines[-1].end
                        self._accept(g.parser.feed_many(lines), now)
                        if self._dirty_since is None:
                            self._dirty_since = now
                    if self.progress is not None:
                        self.progress(n)
                elif isinstance(ev, Opened):
                    self._open(ev)
                    if self.progress is not None and ev.start:
                        self.progress(ev.start)
                elif isinstance(ev, Closed):
                    self._close(ev, now)
                elif isinstance(ev, Idle) and self.live:
                    t = wall() if ev.time is None else ev.time
                    for g in self.gens.values():
                        recs = g.parser.poll(t)
                        if recs:
                            self._accept(recs, now)
                            if self._dirty_since is None:
                                self._dirty_since = now
                self._timers(now)
                if self.failure is not None and self.source.mode != "wrap":
                    break
        finally:
            with contextlib.suppress(Exception):
                close = getattr(src_iter, "close", None)
                if close is not None:
                    close()
        self._finish()
        return stats

    def _close(self, ev: Closed, now: float) -> None:
        g = self.gens[ev.gen]
        if ev.complete:
            t = time.time() if ev.time is None else ev.time
            recs: list[Record] = []
            lines = g.framer.finish(t)
            if lines:
                self.stats.lines += len(lines)
            for line in lines:
                recs.extend(g.parser.feed(line))
            recs.extend(g.parser.finish())
            g.last_end = g.framer.offset
            self._accept(recs, now)
        g.closed = True
        self._seal(now, flush_filters=ev.complete and self.live)

    def _timers(self, now: float) -> None:
        b = self.batcher
        if b.records:
            if b.full:
                self._seal(now)
            elif b.due(now):
                self._seal(now, flush_filters=self.live)
        elif self._dirty_since is not None and now - self._dirty_since >= b.interval:
            self._seal(now, flush_filters=self.live)
        if self._inflight or self._pending_marks:
            self._reap()

    def add_final_row(self, row: dict[str, Any], source: str) -> None:
        """Add a row the forwarder itself writes (wrap mode's exit status row)."""
        props = row.setdefault("Properties", {})
        props[schema.PROP_HAL] = {
            schema.HAL_STREAM: "unknown",
            schema.HAL_RECORD_ID: record_id(source, "unknown", 0),
            schema.HAL_FORMAT: "forwarder",
            schema.HAL_OFFSET: 0,
        }
        self._accept([Record(row, "unknown", 0, 0, source)], time.monotonic())

    def command_row(
        self,
        *,
        status: int,
        description: str,
        seconds: float,
        command: str,
        outcome: str | None = None,
        started: bool = True,
        kind: str = "command",
    ) -> dict[str, Any]:
        row = schema.empty_row()
        ctx = full_context(self.trusted)
        row.update(ctx)
        row["LogType"] = schema.LOG_TYPE_VM
        row["TimeGenerated"] = _now_iso()
        row["Level"] = "INFO" if status == 0 else "ERROR"
        row["LoggerName"] = FORWARDER_LOGGER
        if started:
            row["Message"] = f"{kind} {command} finished: {description} after {seconds:.1f}s"
        else:
            row["Message"] = f"{kind} {command} could not be started: {description}"
        row["Properties"] = {
            kind: command,
            "exit_status": status,
            "duration_seconds": round(seconds, 3),
        }
        if outcome is not None:
            row["Properties"]["command_outcome"] = outcome
        return row

    def _resend_notes(self) -> None:
        """``--resend``: say how many rows kept their ids, and which carried a refusal."""
        ps = self._resend_parsers
        kept = sum(p.resent for p in ps)
        dead = sum(p.dead_letters for p in ps)
        other = sum(p.not_resent for p in ps)
        notes = self.stats.notes
        notes.append(
            f"--resend: {kept} row(s) kept the record_id, context and Properties.hal "
            "they were written with"
        )
        if dead:
            notes.append(
                f"--resend: {dead} row(s) had been refused before (Properties.hal.dead_letter, "
                "dropped from the resent rows); if the service refuses them again, its answer "
                "is in the new dead-letter file"
            )
        if other:
            notes.append(
                f"--resend: {other} row(s) carried no record_id written by hal-logging and were "
                "treated as container output (new record ids, the trust rule applied)"
            )

    def _finish(self) -> None:
        now = time.monotonic()
        # Anything still open (a source that stopped early) keeps its partial line unread.
        for g in self.gens.values():
            g.closed = True
        journal = getattr(self.source, "journal", None)
        if isinstance(self.source, ExitStatusSource) and self.source.returncode is not None:
            # The command's (or container's) status is a fact whatever delivery
            # did: its row is delivered, or kept with the undelivered ones.
            src = self.source
            kind, name, extra, row_source = src.final_row_info()
            row = self.command_row(
                status=src.exit_status,
                description=src.describe_status(),
                seconds=src.seconds,
                command=name,
                outcome=src.outcome,
                started=src.outcome not in (COMMAND_NOT_FOUND, COMMAND_CANNOT_EXECUTE),
                kind=kind,
            )
            row["Properties"].update(extra)
            if journal is not None:  # journaled too: --resume-journal ships it (same id)
                journal.exit(row)
            self.add_final_row(row, row_source)
            self.stats.command_status = src.exit_status
            self.stats.command_seconds = src.seconds
            self.stats.command_outcome = src.outcome
        elif callable(getattr(self.source, "final_row", None)):  # a journal's replay
            replayed = self.source.final_row(self.command_row)  # type: ignore[attr-defined]
            if replayed is not None:
                self.add_final_row(*replayed)
                props = replayed[0].get("Properties") or {}
                self.stats.command_status = props.get("exit_status")
                self.stats.command_seconds = props.get("duration_seconds")
        if self.failure is None:
            if self.filters:
                self._accept(self._flush_filters(), now)
            if self.batcher.records or self.gens:
                self._seal(now)
        else:
            self._keep_undelivered(self.batcher.take().records)
        self._final = True
        self.sink.deadline = time.monotonic() + max(0.0, self.delivery.drain_timeout)
        deadline = self.sink.deadline
        while self._inflight:
            if self.abort.is_set():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait_oldest(min(left, 0.25))
            self._reap()
        self._reap()
        if self._pending_marks:
            self._commit_marks()
        if self._inflight:
            n = sum(len(b.records) for b, _ in self._inflight)
            self.stats.notes.append(
                f"drain timeout: {n} rows were not confirmed within {self.delivery.drain_timeout:g}s"
            )
            for b, _ in self._inflight:
                self._keep_undelivered(b.records)
            self._inflight.clear()
        self._delivery.shutdown()
        if self._resend_parsers:
            self._resend_notes()
        for f in self.filters:
            self.stats.filters[f.name] = dict(f.stats)
        self.stats.finish()
