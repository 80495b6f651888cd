"""``hal-logging query``: read the local workspace (CONTRACT §5) without writing SQL.

Common questions are flags (``--run-id``, ``--task-id``, ``--level`` as a
minimum, ``--logger`` with its children, ``--contains``, ``--since``); anything
else is ``--sql``. Output is a readable table on a terminal and JSON lines
with ``--json`` (Properties as an object), so it pipes into ``jq``.
``--follow`` keeps printing new rows as forwarders store them (polling by
rowid: cheap, and WAL mode means it never blocks a writer).

The database is opened read-only (``mode=ro``), so ``--sql`` cannot change it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from hal_logging import _json, schema

PROG = "hal-logging query"
TABLE = schema.TABLE_NAME
COLUMNS = schema.COLUMN_NAMES
FOLLOW_POLL = 0.5


class QueryError(Exception):
    """A problem the user can fix; the message says how."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Read rows from the local workspace (the SQLite file hal-logging-forward writes).",
        epilog=(
            "examples:\n"
            "  hal-logging query --run-id R1 --level WARNING\n"
            "  hal-logging query --task-id T7 --contains Traceback --json | jq .Message\n"
            "  hal-logging query --since 10m --follow\n"
            '  hal-logging query --sql "SELECT Level, count(*) FROM BenchmarkRuns_CL GROUP BY Level"'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db", metavar="PATH", help="workspace file (env HAL_LOGGING_DB, default ./hal-logs.db)"
    )
    p.add_argument("--run-id", metavar="ID")
    p.add_argument("--task-id", metavar="ID")
    p.add_argument(
        "--level", type=str.upper, choices=schema.LEVELS, metavar="LEVEL", help="minimum level"
    )
    p.add_argument("--logger", metavar="NAME", help="LoggerName NAME or its children (NAME.*)")
    p.add_argument("--contains", metavar="TEXT", help="Message contains TEXT (case-insensitive)")
    p.add_argument(
        "--since", metavar="WHEN", help="ISO 8601 time, or an age such as 30s, 10m, 2h, 1d"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=200,
        metavar="N",
        help="at most the last N rows (default 200, 0: all)",
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument(
        "--sql", metavar="SELECT", help="run a read-only SQL statement instead of the filters"
    )
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new rows (Ctrl-C to stop)"
    )
    return p


def parse_since(text: str, now: datetime | None = None) -> str:
    """An ISO UTC time string comparable with TimeGenerated."""
    now = now or datetime.now(timezone.utc)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        n = float(m.group(1))
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        when = now - timedelta(seconds=n * unit)
    else:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(
                f"--since {text!r}: give an ISO time (2024-05-01T12:00:00Z) or an age (30s, 10m, 2h, 1d)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _where(ns: argparse.Namespace) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if ns.run_id is not None:
        clauses.append('"RunID" = ?')
        params.append(ns.run_id)
    if ns.task_id is not None:
        clauses.append('"TaskID" = ?')
        params.append(ns.task_id)
    if ns.level:
        allowed = [
            lv for lv in schema.LEVELS if schema.LEVEL_NUMBERS[lv] >= schema.LEVEL_NUMBERS[ns.level]
        ]
        clauses.append('"Level" IN (' + ", ".join("?" for _ in allowed) + ")")
        params.extend(allowed)
    if ns.logger:
        clauses.append('("LoggerName" = ? OR substr("LoggerName", 1, ?) = ?)')
        params.extend([ns.logger, len(ns.logger) + 1, ns.logger + "."])
    if ns.contains:
        clauses.append('instr(lower("Message"), lower(?)) > 0')
        params.append(ns.contains)
    if ns.since:
        clauses.append('"TimeGenerated" >= ?')
        params.append(parse_since(ns.since))
    return (" AND ".join(clauses) or "1"), params


def connect_ro(path: str) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise QueryError(
            f"no workspace at {path}: ship something first (hal-logging-forward ...) or pass --db PATH"
        )
    uri = "file:" + _quote_path(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=10)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(f'SELECT 1 FROM "{TABLE}" LIMIT 1').fetchall()
    except sqlite3.Error as exc:
        raise QueryError(f"{path} is not a readable hal-logging workspace ({exc})") from exc
    return conn


def _quote_path(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


# -- output ---------------------------------------------------------------------------


def _row_json(cols: Sequence[str], values: Sequence[Any]) -> bytes:
    obj: dict[str, Any] = {}
    for c, v in zip(cols, values, strict=True):
        if c == "Properties" and isinstance(v, str):
            try:
                v = _json.loads(v)
            except ValueError:
                pass
        obj[c] = v
    return _json.dumps(obj)


class _Table:
    """Readable rows: time, level, logger, task, message (first line, fit to the terminal)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.width = shutil.get_terminal_size((120, 24)).columns if tty else 0
        self.header_done = False

    def line(self, row: dict[str, Any]) -> str:
        t = str(row.get("TimeGenerated") or "")[:23].replace("T", " ")
        lv = str(row.get("Level") or "")
        lg = str(row.get("LoggerName") or "")
        task = str(row.get("TaskID") or "")
        msg = str(row.get("Message") or "")
        if self.tty:
            first, _, rest = msg.partition("\n")
            msg = first + (" …" if rest else "")
            text = f"{t:<23}  {lv:<8} {lg[:24]:<24} {task[:12]:<12} {msg}"
            if self.width and len(text) > self.width:
                text = text[: self.width - 1] + "…"
            return text
        return "\t".join((t, lv, lg, task, msg.replace("\n", "\\n")))

    def header(self) -> str | None:
        if self.header_done or not self.tty:
            return None
        self.header_done = True
        return (
            f"{'TimeGenerated (UTC)':<23}  {'Level':<8} {'LoggerName':<24} {'TaskID':<12} Message"
        )


def _emit(out: Any, text: str | bytes) -> None:
    if isinstance(text, str):
        text = text.encode("utf-8", "backslashreplace")
    out.write(text + b"\n")


def run_sql(conn: sqlite3.Connection, sql: str, as_json: bool, out: Any) -> int:
    try:
        cur = conn.execute(sql)
    except sqlite3.Error as exc:
        raise QueryError(
            f"--sql failed: {exc} (the workspace is opened read-only; table {TABLE})"
        ) from exc
    cols = [d[0] for d in cur.description or ()]
    n = 0
    if not as_json and cols:
        _emit(out, "\t".join(cols))
    for values in cur:
        n += 1
        if as_json:
            _emit(out, _row_json(cols, values))
        else:
            _emit(out, "\t".join("" if v is None else str(v).replace("\n", "\\n") for v in values))
    return n


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(args)
    out = sys.stdout.buffer
    db = ns.db or os.environ.get("HAL_LOGGING_DB") or "hal-logs.db"
    try:
        conn = connect_ro(db)
        if ns.sql:
            run_sql(conn, ns.sql, ns.json, out)
            out.flush()
            return 0
        where, params = _where(ns)
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        limit = "" if ns.limit <= 0 else f" LIMIT {int(ns.limit)}"
        sql = f'SELECT rowid, {cols} FROM "{TABLE}" WHERE {where} ORDER BY "TimeGenerated" DESC, rowid DESC{limit}'
        try:
            rows = conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise QueryError(f"query failed: {exc}") from exc
        rows.reverse()
        table = _Table(sys.stdout.isatty())
        last = max((r[0] for r in rows), default=0)
        if not ns.follow:
            with contextlib.suppress(sqlite3.Error):
                last = conn.execute(f'SELECT max(rowid) FROM "{TABLE}"').fetchone()[0] or 0
        _print_rows(rows, ns.json, table, out)
        if ns.follow:
            with contextlib.suppress(sqlite3.Error):
                last = max(
                    last, conn.execute(f'SELECT max(rowid) FROM "{TABLE}"').fetchone()[0] or 0
                )
            follow_sql = f'SELECT rowid, {cols} FROM "{TABLE}" WHERE rowid > ? AND rowid <= ? AND {where} ORDER BY rowid'
            top_sql = f'SELECT max(rowid) FROM "{TABLE}"'
            try:
                while True:
                    # Read the top first, then the rows up to it: a row committed in
                    # between is picked up next round, never skipped.
                    top = conn.execute(top_sql).fetchone()[0] or 0
                    if top > last:
                        new = conn.execute(follow_sql, [last, top, *params]).fetchall()
                        last = top
                        _print_rows(new, ns.json, table, out)
                    else:
                        time.sleep(FOLLOW_POLL)
            except KeyboardInterrupt:
                return 0
        return 0
    except QueryError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2 if "--sql" in str(exc) or "--since" in str(exc) else 1
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stderr.close()
        return 0


def _print_rows(rows: Sequence[Sequence[Any]], as_json: bool, table: _Table, out: Any) -> None:
    for r in rows:
        values = r[1:]
        if as_json:
            _emit(out, _row_json(COLUMNS, values))
        else:
            h = table.header()
            if h:
                _emit(out, h)
            _emit(out, table.line(dict(zip(COLUMNS, values, strict=True))))
    out.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
