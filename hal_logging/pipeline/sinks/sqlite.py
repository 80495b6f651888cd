"""The local workspace: the table's thirteen columns in a SQLite file (CONTRACT §5).

Why SQLite: any client reads it, it is in the stdlib, and with WAL journaling
readers (``hal-logging query --follow``) never block the writer and several
forwarders can write one file (each batch waits its turn via ``busy_timeout``).

Guarantees the runner relies on:

* ``write`` returns after the batch's transaction committed with
  ``synchronous=FULL``: the rows survive a crash or power loss, so the
  checkpoint may advance.
* A record is stored once: ``_record_id`` (Properties.hal.record_id) is UNIQUE
  and inserts are ``INSERT OR IGNORE``, so a batch re-sent after a crash adds
  nothing; the ignored rows are counted as duplicates.
* A locked database is retried until the drain deadline; a read-only or full
  disk is fatal (retrying cannot help) and the checkpoint stays put.
"""

from __future__ import annotations

import contextlib
import operator
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from hal_logging import _json, schema
from hal_logging.pipeline.model import DeliveryError, Record, Row, Sink, WriteResult

DEFAULT_DB = "hal-logs.db"
TABLE = schema.TABLE_NAME
_STRING_COLS = tuple(c for c in schema.COLUMN_NAMES if c != "Properties")
_ALL_COLS = (*schema.COLUMN_NAMES, "_record_id")
_INSERT = (
    f'INSERT OR IGNORE INTO "{TABLE}" ('
    + ", ".join(f'"{c}"' for c in _ALL_COLS)
    + ") VALUES ("
    + ", ".join("?" for _ in _ALL_COLS)
    + ")"
)
_INDEXES = (
    f'CREATE INDEX IF NOT EXISTS "ix_{TABLE}_run" ON "{TABLE}" ("RunID", "TaskID")',
    f'CREATE INDEX IF NOT EXISTS "ix_{TABLE}_task" ON "{TABLE}" ("TaskID")',
    f'CREATE INDEX IF NOT EXISTS "ix_{TABLE}_time" ON "{TABLE}" ("TimeGenerated")',
)
BUSY_TIMEOUT_MS = 10_000
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
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
                self._conn.execute("PRAGMA synchronous=FULL")
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
        rows = list(values)
        if not rows:
            return 0, 0
        give_up = deadline if deadline is not None else time.monotonic() + LOCK_RETRY_SECONDS
        delay = 0.05
        conn = self._conn
        with self._lock:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        before = conn.total_changes
                        conn.executemany(_INSERT, rows)
                        inserted = conn.total_changes - before
                        conn.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                        raise
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

    def write(self, records: Sequence[Record]) -> WriteResult:
        inserted, ignored = self.workspace.insert(
            (row_values(r.row) for r in records), self.deadline
        )
        return WriteResult(delivered=inserted + ignored, duplicates=ignored)

    def close(self) -> None:
        self.workspace.close()
