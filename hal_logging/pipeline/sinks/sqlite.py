"""The local workspace: the table's thirteen columns in a SQLite file (docs/contract.md §5).

Why SQLite: any client reads it, it is in the stdlib, and with WAL journaling
readers (``hal-logging query --follow``) never block the writer and several
forwarders can write one file (each batch waits its turn via ``busy_timeout``).

Guarantees the runner relies on:

* ``write`` returns after the batch's transaction committed: the rows survive
  the forwarder being killed (SIGKILL, OOM) or crashing at any point, so the
  checkpoint may advance. In WAL mode this holds with ``synchronous=NORMAL``:
  a commit appends the transaction to the WAL file with ``write()`` before
  returning, so it is in the kernel and survives the death of the process;
  only an OS crash or power loss before the next WAL checkpoint could lose the
  last transactions (then the forwarder's checkpoint, also written after the
  commit, may be ahead; the threat model is kills, crashes and outages, not
  power loss). NORMAL skips one ``fsync`` per transaction, which is most of a
  small batch's cost. Without WAL (a filesystem that refuses it) the workspace
  keeps ``synchronous=FULL``.
* A record is stored once: ``_record_id`` (Properties.hal.record_id) is UNIQUE
  and inserts are ``INSERT OR IGNORE``, so a batch re-sent after a crash adds
  nothing; the ignored rows are counted as duplicates.
* A locked database is retried until the drain deadline; a read-only or full
  disk is fatal (retrying cannot help) and the checkpoint stays put.

Speed (benchmarks/forward.py; measured per 100k rows):

* A batch goes in multi-row ``INSERT ... SELECT ... FROM (VALUES ...)``
  statements of a few sizes (:data:`STATEMENT_SIZES`), not ``executemany``:
  the sink runs on a delivery thread, ``sqlite3`` releases the GIL around each
  step, and per row (``executemany``) the writer had to win the GIL back from
  the busy parser for every row (a convoy). With hundreds of rows per step the
  B-tree work runs beside the parsing.
* The eight context columns are bound once per statement (runs of rows share
  them): binding holds the GIL and costs per value.
* The row's text comes from ``Record.columns`` (Properties serialised once, by
  the run's stats), made into insert tuples by :meth:`SqliteSink.prepare` on
  the reading thread while it is in cache.
* Record ids of one source grow with the offset: the UNIQUE index grows at its end.
* ``synchronous=NORMAL`` in WAL mode (above); 16 KB pages (:data:`PAGE_SIZE`).
  What is left per row, and what was tried: benchmarks/results/forward-floor.md.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hal_logging import _json, schema
from hal_logging.pipeline.model import DeliveryError, Record, Row, Sink, WriteResult

DEFAULT_DB = "hal-logs.db"
TABLE = schema.TABLE_NAME
_STRING_COLS = tuple(c for c in schema.COLUMN_NAMES if c != "Properties")
_ALL_COLS = (*schema.COLUMN_NAMES, "_record_id")
_INDEXES = (
    f'CREATE INDEX IF NOT EXISTS "ix_{TABLE}_run" ON "{TABLE}" ("RunID", "TaskID")',
    f'CREATE INDEX IF NOT EXISTS "ix_{TABLE}_task" ON "{TABLE}" ("TaskID")',
    f'CREATE INDEX IF NOT EXISTS "ix_{TABLE}_time" ON "{TABLE}" ("TimeGenerated")',
)
BUSY_TIMEOUT_MS = 10_000
#: Page size of a new file (SQLite's: 4 KB; an existing file keeps its own). Rows
#: append at the end of five B-trees: fewer splits. Writer CPU/100k rows -13 %.
PAGE_SIZE = 16384
#: The WAL is checkpointed at about this size (SQLite's 1000 pages of 4 KB).
WAL_BYTES = 4 << 20
#: Rows per INSERT statement (6 parameters each, plus 9; SQLite allows 32,766).
#: Only these sizes are prepared (each cached, ~0.6 KB per row): a batch goes in
#: pieces of the largest, the last padded up to the next size with zeros that a
#: ``LIMIT`` leaves unread. Against one statement per batch padded up to 4096
#: rows: 20% less CPU (binding padding is not free).
STATEMENT_SIZES = (16, 32, 64, 128, 256, 512, 1024)
_COLS_SQL = ", ".join(f'"{c}"' for c in _ALL_COLS)
#: Per row: TimeGenerated, Level, Message, LoggerName, Properties, _record_id.
#: The eight context columns between LoggerName and Properties are bound once
#: per statement: rows of a run share them (see :func:`_insert_sql`).
_CTX = slice(4, 12)
_PER_ROW = 6
_SELECT = (
    "column1, column2, column3, column4, "
    + ", ".join(f"?{i}" for i in range(1, _CTX.stop - _CTX.start + 1))
    + ", column5, column6"
)
_ROW_MARKS = "(" + ", ".join("?" * _PER_ROW) + ")"
_insert_sql_cache: dict[int, str] = {}


def _insert_sql(n: int) -> str:
    """``INSERT OR IGNORE`` of up to ``n`` rows that share their context columns.

    Parameters: ``?1``..``?8`` the context (bound once: binding holds the GIL and
    costs per value, so this halves the delivery thread's share of it), six per
    row in a ``VALUES`` list (inserted in its order), then how many rows are
    real: the ``LIMIT`` stops before the padding. (Anonymous ``?`` after the
    context: SQLite looks explicitly numbered ones up by a linear search, which
    made preparing a 4096-row statement take a second.) The same string object
    for the same ``n``: the connection's statement cache finds it at once.
    """
    sql = _insert_sql_cache.get(n)
    if sql is None:
        sql = _insert_sql_cache[n] = (
            f'INSERT OR IGNORE INTO "{TABLE}" ({_COLS_SQL}) SELECT {_SELECT} FROM (VALUES '
            + ", ".join([_ROW_MARKS] * n)
            + ") LIMIT ?"
        )
    return sql


Split = tuple[tuple[Any, ...], tuple[Any, ...]]
"""An insert tuple split: (the eight context values, the six others)."""


def _split(values: tuple[Any, ...]) -> Split:
    return values[_CTX], (*values[:4], *values[_CTX.stop :])


#: Retry window for a locked database when no drain deadline is set.
LOCK_RETRY_SECONDS = 120.0


def default_db_path() -> str:
    """``$HAL_LOGGING_DB`` or ``./hal-logs.db``."""
    return os.environ.get("HAL_LOGGING_DB") or DEFAULT_DB


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


_get_strings = operator.itemgetter(*_STRING_COLS)
_HAL = schema.PROP_HAL
_RID = schema.HAL_RECORD_ID


def row_values(row: Row) -> tuple[Any, ...]:
    """The insert tuple of a row: strings, Properties as JSON text, the record id."""
    props = row.get("Properties")
    if isinstance(props, dict):
        hal = props.get(schema.PROP_HAL)
        rid = hal.get(schema.HAL_RECORD_ID) if isinstance(hal, dict) else None
        props_text = _json.dumps_str(props)
    else:
        rid = None
        props_text = _text(props) or "{}"
    if not isinstance(rid, str) or not rid:
        rid = None
    try:
        strings = _get_strings(row)
    except KeyError:
        strings = tuple(_text(row.get(c)) for c in _STRING_COLS)
    else:
        if not all(type(v) is str for v in strings):
            strings = tuple(_text(v) for v in strings)
    return (*strings, props_text, rid)


def _prepared(record: Record) -> Split | None:
    """The split insert tuple from ``Record.columns`` (None when there are none)."""
    c = record.columns
    if c is None:
        return None
    try:
        rid = record.row["Properties"][_HAL][_RID]
    except (KeyError, TypeError):
        rid = None
    return c[_CTX], (c[0], c[1], c[2], c[3], c[12], rid if type(rid) is str and rid else None)


def record_values(records: Iterable[Record]) -> list[Split]:
    """Split insert tuples of records: ``Record.prepared``, else made here."""
    out: list[Split] = []
    append = out.append
    for r in records:
        values = r.prepared
        if values is None:
            values = _prepared(r) or _split(row_values(r.row))
        append(values)
    return out


def _statements(items: list[Split]) -> Iterator[tuple[str, list[Any]]]:
    """INSERT statements for ``items`` in order: runs of rows with the same context,
    in pieces of the largest of :data:`STATEMENT_SIZES`; the last piece of a run
    is padded up to the next size."""
    n = len(items)
    first = items[0][0] if items else ()
    if n and [c for c, _ in items].count(first) == n:  # the usual batch: one context
        runs = [(first, items)]
    else:
        runs = []
        i = 0
        while i < n:
            ctx = items[i][0]
            j = i + 1
            while j < n:
                other = items[j][0]
                if other is not ctx and other != ctx:
                    break
                j += 1
            runs.append((ctx, items[i:j]))
            i = j
    flat = itertools.chain.from_iterable
    largest = STATEMENT_SIZES[-1]
    for ctx, run in runs:
        for k in range(0, len(run), largest):
            piece = run[k : k + largest]
            m = len(piece)
            size = next(s for s in STATEMENT_SIZES if s >= m)
            params = [*ctx, *flat(map(_second, piece))]
            if size > m:
                # Never read (LIMIT). 0, not None: sqlite3 sends None through its
                # adapter lookup (630 vs 46 ns a parameter, GIL held).
                params.extend([0] * (_PER_ROW * (size - m)))
            params.append(m)
            yield _insert_sql(size), params


_second = operator.itemgetter(1)


class Workspace:
    """A connection to a workspace file that stores rows exactly once.

    Thread-safe: one connection, writes serialised by a lock (SQLite has one
    writer anyway). Also used by the emulator to store the rows it accepts.
    """

    def __init__(self, path: str, *, timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self._lock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise DeliveryError(
                f"cannot open the local workspace {path}: {exc}; pass --db PATH to a writable file",
                fatal=True,
            ) from exc
        self._setup(timeout_ms)

    def _setup(self, timeout_ms: int) -> None:
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        while True:
            try:
                self._conn.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
                # (A new file only; before WAL, which fixes it.)
                self._conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
                wal = bool(mode) and str(mode[0]).lower() == "wal"
                # NORMAL is crash-safe in WAL mode (see the module docstring).
                self._conn.execute(f"PRAGMA synchronous={'NORMAL' if wal else 'FULL'}")
                page = self._conn.execute("PRAGMA page_size").fetchone()[0]
                self._conn.execute(f"PRAGMA wal_autocheckpoint={max(1, WAL_BYTES // page)}")
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute(schema.sqlite_ddl(TABLE))
                    for ddl in _INDEXES:
                        self._conn.execute(ddl)
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                self.journal_mode = str(mode[0]) if mode else "?"
                return
            except sqlite3.OperationalError as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.05 + random.random() * 0.1)
                    continue
                raise DeliveryError(
                    f"cannot prepare the local workspace {self.path}: {exc}; "
                    "check the file is a hal-logging workspace and writable, or pass --db PATH",
                    fatal=True,
                ) from exc
            except sqlite3.DatabaseError as exc:
                raise DeliveryError(
                    f"{self.path} is not a usable SQLite workspace ({exc}); pass --db PATH",
                    fatal=True,
                ) from exc

    def insert(
        self, values: Iterable[tuple[Any, ...]], deadline: float | None = None
    ) -> tuple[int, int]:
        """Insert rows (as :func:`row_values` tuples) in one transaction: (inserted, ignored)."""
        return self.insert_split([_split(v) for v in values], deadline)

    def insert_split(self, rows: list[Split], deadline: float | None = None) -> tuple[int, int]:
        """:meth:`insert` for rows already split (context, others), as the sink makes them."""
        if not rows:
            return 0, 0
        give_up = deadline if deadline is not None else time.monotonic() + LOCK_RETRY_SECONDS
        delay = 0.05
        conn = self._conn
        statements = list(_statements(rows))
        with self._lock:
            while True:
                try:
                    before = conn.total_changes
                    if len(statements) == 1:
                        # One statement is its own transaction: no BEGIN/COMMIT
                        # round trips (each costs the thread the GIL again).
                        conn.execute(*statements[0])
                    else:
                        conn.execute("BEGIN IMMEDIATE")
                        try:
                            for sql, params in statements:
                                conn.execute(sql, params)
                            conn.execute("COMMIT")
                        except BaseException:
                            with contextlib.suppress(sqlite3.Error):
                                conn.execute("ROLLBACK")
                            raise
                    inserted = conn.total_changes - before
                    return inserted, len(rows) - inserted
                except sqlite3.OperationalError as exc:
                    if _is_busy(exc) and time.monotonic() < give_up:
                        time.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, 1.0)
                        continue
                    fatal = not _is_busy(exc)
                    raise DeliveryError(
                        f"could not write to the local workspace {self.path}: {exc}"
                        + (
                            "; free disk space or fix permissions, then rerun (undelivered rows are kept)"
                            if fatal
                            else "; another process holds the database lock, rerun later"
                        ),
                        fatal=fatal,
                    ) from exc
                except sqlite3.DatabaseError as exc:
                    raise DeliveryError(
                        f"the local workspace {self.path} is damaged ({exc}); "
                        "move it aside and rerun (undelivered rows are kept)",
                        fatal=True,
                    ) from exc

    def insert_rows(self, rows: Sequence[Row], deadline: float | None = None) -> tuple[int, int]:
        return self.insert(map(row_values, rows), deadline)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


class SqliteSink(Sink):
    """Sink into the local workspace."""

    name = "sqlite"
    max_in_flight = 1

    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_db_path()
        self.workspace = Workspace(self.path)
        self._contexts: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def prepare(self, records: Sequence[Record]) -> None:
        """Insert tuples, made on the reading thread (see :meth:`Sink.prepare`)."""
        intern = self._contexts
        last: tuple[Any, ...] = ()
        for r in records:
            c = r.columns
            if c is None:
                continue
            try:
                rid = r.row["Properties"][_HAL][_RID]
            except (KeyError, TypeError):
                rid = None
            ctx = c[_CTX]
            if ctx != last:  # one tuple object per context: the writer groups by identity
                last = ctx = intern.setdefault(ctx, ctx)
            r.prepared = (
                last,
                (c[0], c[1], c[2], c[3], c[12], rid if type(rid) is str and rid else None),
            )
        if len(intern) > 256:
            intern.clear()

    def write(self, records: Sequence[Record]) -> WriteResult:
        inserted, ignored = self.workspace.insert_split(record_values(records), self.deadline)
        return WriteResult(delivered=inserted + ignored, duplicates=ignored)

    def close(self) -> None:
        self.workspace.close()
