"""The stand-in's workspace: accepted rows in SQLite, duplicates included.

Same table name and thirteen columns as the forwarder's local workspace
(:func:`hal_logging.schema.sqlite_ddl`), so ``hal-logging query --db`` reads it.
One difference on purpose: Azure has no de-duplication (docs/facts.md §1), so here
``_record_id`` is a plain indexed column, not UNIQUE — a retry after a lost
answer stores the rows twice, exactly as Log Analytics would, and tests can
count those duplicates by record id.

A second table, ``_emulator_requests``, keeps one line per ingestion request
(status, sizes, fault) so tests can check limits across emulator restarts.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from hal_logging import _json, schema

_ROW_COLUMNS = (*schema.COLUMN_NAMES, "_record_id")
_INSERT = (
    f'INSERT INTO "{schema.TABLE_NAME}" ('
    + ", ".join(f'"{c}"' for c in _ROW_COLUMNS)
    + ") VALUES ("
    + ", ".join("?" for _ in _ROW_COLUMNS)
    + ")"
)
_REQUESTS_DDL = """CREATE TABLE IF NOT EXISTS "_emulator_requests" (
  "id" INTEGER PRIMARY KEY,
  "key" TEXT,
  "time" REAL,
  "status" INTEGER,
  "fault" TEXT,
  "compressed_bytes" INTEGER,
  "uncompressed_bytes" INTEGER,
  "rows" INTEGER,
  "stored" INTEGER
)"""
#: Which request stored which row: how tests tell a justified duplicate from a bug.
_STORED_DDL = 'CREATE TABLE IF NOT EXISTS "_emulator_stored" ("request_key" TEXT, "record_id" TEXT)'
_META_DDL = 'CREATE TABLE IF NOT EXISTS "_emulator_meta" ("key" TEXT PRIMARY KEY, "value" TEXT)'


def _ddl() -> str:
    ddl = schema.sqlite_ddl()
    non_unique = ddl.replace('"_record_id" TEXT UNIQUE', '"_record_id" TEXT')
    if non_unique == ddl:  # the skeleton changed shape: fail loudly rather than dedup silently
        raise RuntimeError("schema.sqlite_ddl() no longer declares _record_id TEXT UNIQUE")
    return non_unique


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _json.dumps_str(value)


def record_id_of(row: dict[str, Any]) -> str | None:
    props = row.get("Properties")
    if isinstance(props, dict):
        hal = props.get(schema.PROP_HAL)
        if isinstance(hal, dict):
            rid = hal.get(schema.HAL_RECORD_ID)
            if isinstance(rid, str):
                return rid
    return None


class Workspace:
    """A thread-safe SQLite file (or memory) holding what the stand-in accepted."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or ":memory:"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        # A workspace written by the forwarder has a UNIQUE _record_id: refuse it
        # rather than silently dropping the duplicates this stand-in must keep.
        existing = self._db.execute(
            "SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (schema.TABLE_NAME,)
        ).fetchone()
        if existing and "UNIQUE" in (existing[0] or ""):
            raise ValueError(
                f"{self.path} is a forwarder workspace (unique record ids); give the emulator "
                "its own --db file: Azure keeps duplicates and so must the stand-in"
            )
        self._db.execute(_ddl())
        self._db.execute(
            f'CREATE INDEX IF NOT EXISTS "_emulator_record_id" ON "{schema.TABLE_NAME}" ("_record_id")'
        )
        self._db.execute(_REQUESTS_DDL)
        self._db.execute(_STORED_DDL)
        self._db.execute(
            'CREATE INDEX IF NOT EXISTS "_emulator_requests_key" ON "_emulator_requests" ("key")'
        )
        self._db.execute(_META_DDL)

    def secret(self) -> bytes:
        """The token-signing secret, kept in the file so tokens survive a restart."""
        with self._lock:
            row = self._db.execute(
                'SELECT value FROM "_emulator_meta" WHERE key = ?', ("token_secret",)
            ).fetchone()
            if row:
                return bytes.fromhex(row[0])
            value = secrets.token_bytes(32)
            self._db.execute(
                'INSERT INTO "_emulator_meta" (key, value) VALUES (?, ?)',
                ("token_secret", value.hex()),
            )
            return value

    def insert(self, rows: Sequence[dict[str, Any]], request_key: str = "") -> None:
        values = [
            (*(_text(row.get(c)) for c in schema.COLUMN_NAMES), record_id_of(row)) for row in rows
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_INSERT, values)
                self._db.executemany(
                    'INSERT INTO "_emulator_stored" (request_key, record_id) VALUES (?, ?)',
                    [(request_key, v[-1]) for v in values],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def log_request(
        self,
        *,
        key: str = "",
        time: float,
        status: int,
        fault: str | None,
        compressed: int,
        uncompressed: int,
        rows: int,
        stored: bool,
    ) -> None:
        with self._lock:
            self._db.execute(
                'INSERT INTO "_emulator_requests" (key, time, status, fault, compressed_bytes, '
                "uncompressed_bytes, rows, stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, time, status, fault, compressed, uncompressed, rows, int(stored)),
            )

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)).fetchall())

    def count(self) -> int:
        return int(self.query(f'SELECT COUNT(*) FROM "{schema.TABLE_NAME}"')[0][0])

    def record_ids(self) -> list[str | None]:
        """Every stored row's record id, duplicates included, in insertion order."""
        return [
            r[0]
            for r in self.query(f'SELECT "_record_id" FROM "{schema.TABLE_NAME}" ORDER BY rowid')
        ]

    def rows(self) -> list[dict[str, Any]]:
        """Stored rows as dicts (Properties parsed back), in insertion order."""
        cols = ", ".join(f'"{c}"' for c in schema.COLUMN_NAMES)
        out: list[dict[str, Any]] = []
        for values in self.query(f'SELECT {cols} FROM "{schema.TABLE_NAME}" ORDER BY rowid'):
            row = dict(zip(schema.COLUMN_NAMES, values, strict=True))
            props = row.get("Properties")
            if isinstance(props, str):
                try:
                    row["Properties"] = _json.loads(props)
                except _json.JSONDecodeError:
                    pass
            out.append(row)
        return out

    def requests(self) -> list[dict[str, Any]]:
        names = (
            "time",
            "status",
            "fault",
            "compressed_bytes",
            "uncompressed_bytes",
            "rows",
            "stored",
        )
        return [
            dict(zip(names, r, strict=True))
            for r in self.query(f'SELECT {", ".join(names)} FROM "_emulator_requests" ORDER BY id')
        ]

    def copies(self) -> list[tuple[str | None, str, float, int, str | None]]:
        """(record id, request key, request time, status, fault) of every stored row."""
        return [
            (r[0], r[1], r[2], r[3], r[4])
            for r in self.query(
                'SELECT s.record_id, s.request_key, q.time, q.status, q.fault FROM "_emulator_stored" s '
                'LEFT JOIN "_emulator_requests" q ON q.key = s.request_key ORDER BY s.rowid'
            )
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
