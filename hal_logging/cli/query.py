"""``hal-logging query``: read the local workspace (docs/contract.md §5) without writing SQL.

Common questions are flags (``--run-id``, ``--task-id``, ``--level`` as a
minimum, ``--logger`` with its children, ``--contains``, ``--since``); anything
else is ``--sql``. Output is a readable table on a terminal and JSON lines
with ``--json`` (Properties as an object), so it pipes into ``jq``.
``--follow`` keeps printing new rows as forwarders store them (polling by
rowid: cheap, and WAL mode means it never blocks a writer).

The database is opened read-only (``mode=ro``), so ``--sql`` cannot change it.

Azure has no idempotency key, so a retry after a lost answer stores a row twice;
the emulator's workspace keeps such copies as Azure would. ``--dedupe`` keeps
the first stored row of each ``Properties.hal.record_id`` (the local twin of
KQL's ``summarize arg_max(...) by tostring(Properties.hal.record_id)``), in SQL
on the indexed ``_record_id`` column, so it costs an index probe per row.

A row whose container claimed something the VM side did not accept carries
``Properties.hal.claimed``; the table view marks it with ``!`` (a forged
"exit status 0" must not look like the real one), ``--json`` prints it as is.

Every mistake ends in one line on stderr saying what to do, never a usage dump
or a traceback: exit 2 for a wrong flag or value, 1 for a workspace that is
missing, a directory, or not a workspace.
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
from typing import Any, NoReturn

from hal_logging import _json, schema

PROG = "hal-logging query"
TABLE = schema.TABLE_NAME
COLUMNS = schema.COLUMN_NAMES
FOLLOW_POLL = 0.5


#: Marker of a row that carried claims (``Properties.hal.claimed``) in the table view.
CLAIM_MARK = "!"
CLAIM_LEGEND = (
    f"{CLAIM_MARK} = the container claimed values the VM side did not accept "
    "(kept in Properties.hal.claimed; see them with --json)"
)


class QueryError(Exception):
    """A problem the user can fix; the message says how. ``status``: the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line naming the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise QueryError(f"{message} (see {PROG} --help)", status=2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Read rows from the local workspace (the SQLite file hal-logging-forward writes).",
        epilog=(
            "examples:\n"
            "  hal-logging query --run-id R1 --level WARNING\n"
            "  hal-logging query --task-id T7 --contains Traceback --json | jq .Message\n"
            "  hal-logging query --since 10m --follow\n"
            "  hal-logging query --db emu.db --dedupe --task-id T7\n"
            '  hal-logging query --sql "SELECT Level, count(*) FROM BenchmarkRuns_CL GROUP BY Level"'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.epilog = (p.epilog or "") + "\n\n" + CLAIM_LEGEND.replace("!", "table view: '!'", 1)
    p.add_argument(
        "--db", metavar="PATH", help="workspace file (env HAL_LOGGING_DB, default ./hal-logs.db)"
    )
    p.add_argument("--run-id", metavar="ID")
    p.add_argument("--task-id", metavar="ID")
    p.add_argument("--level", metavar="LEVEL", help="minimum level: " + ", ".join(schema.LEVELS))
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
        "--dedupe",
        action="store_true",
        help="one row per Properties.hal.record_id (the first stored; rows without an id are "
        "all kept): removes the copies a retry stored in Azure or the emulator",
    )
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new rows (Ctrl-C to stop); waits for the workspace if it does "
        "not exist yet",
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
                f"--since {text!r}: give an ISO time (2024-05-01T12:00:00Z) or an age (30s, 10m, 2h, 1d)",
                status=2,
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_level(text: str) -> str:
    """``--level`` in any case; anything else is a one-line usage error naming the levels."""
    level = text.strip().upper()
    if level not in schema.LEVELS:
        raise QueryError(
            f"--level {text!r} is not a level: give one of {', '.join(schema.LEVELS)}", status=2
        )
    return level


def _where(ns: argparse.Namespace) -> tuple[str, list[Any]]:
    """The filters as an SQL condition on unqualified column names, and its parameters.

    Unqualified on purpose: the same text filters the outer rows and, inside
    ``--dedupe``'s sub-query, the earlier copies it compares them with.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if ns.run_id is not None:
        clauses.append('"RunID" = ?')
        params.append(ns.run_id)
    if ns.task_id is not None:
        clauses.append('"TaskID" = ?')
        params.append(ns.task_id)
    if ns.level:
        level = check_level(ns.level)
        allowed = [
            lv for lv in schema.LEVELS if schema.LEVEL_NUMBERS[lv] >= schema.LEVEL_NUMBERS[level]
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


def record_id_expr(conn: sqlite3.Connection) -> str:
    """SQL for a row's record id: the workspace's indexed ``_record_id`` column when it has one.

    Both the forwarder's workspace and the emulator's keep ``Properties.hal.record_id``
    in ``_record_id`` (indexed); a table made by other means is read from the JSON.
    """
    cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{TABLE}")')}
    if "_record_id" in cols:
        return '"_record_id"'
    return (
        'CASE WHEN json_valid("Properties") '
        "THEN json_extract(\"Properties\", '$.hal.record_id') END"
    )


def dedupe_clause(rid: str, where: str, params: Sequence[Any]) -> tuple[str, list[Any]]:
    """Keep a row unless an earlier-stored row (lower rowid) matching the same filters has its id.

    Keeping the first copy (not the last) is what lets ``--follow`` decide about a
    row once, when it arrives. The copies are compared under the same filters, so a
    copy that falls outside ``--since`` never hides one inside it. Rows without a
    record id (NULL or empty) are all kept.
    """
    outer = rid.replace('"_record_id"', 'r."_record_id"').replace('"Properties"', 'r."Properties"')
    clause = (
        f"({outer} IS NULL OR {outer} = '' OR NOT EXISTS ("
        f'SELECT 1 FROM "{TABLE}" AS d WHERE {rid} = {outer} AND d.rowid < r.rowid AND ({where})))'
    )
    return clause, list(params)


def connect_ro(path: str) -> sqlite3.Connection:
    """Open the workspace read-only; :class:`QueryError` says what is wrong with ``path``."""
    if os.path.isdir(path):
        raise QueryError(
            f"{path} is a directory, not a workspace file: pass the file itself, "
            f"e.g. --db {os.path.join(path, 'hal-logs.db')}"
        )
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
        raise QueryError(
            f"{path} is not a readable hal-logging workspace ({exc}): pass the file "
            "hal-logging-forward --db (or the emulator's --db) wrote"
        ) from exc
    return conn


def wait_for_workspace(path: str, poll: float = FOLLOW_POLL) -> sqlite3.Connection:
    """``--follow`` before the forwarder started: wait until ``path`` is a workspace.

    A file without the table yet (the forwarder is creating it) is waited for too;
    a directory or a file that is not SQLite is an error at once.
    """
    said = False
    while True:
        if os.path.isdir(path):
            return connect_ro(path)  # raises: a directory never becomes a workspace
        if os.path.exists(path):
            try:
                return connect_ro(path)
            except QueryError as exc:
                if "no such table" not in str(exc):
                    raise
        if not said:
            print(
                f"{PROG}: no workspace at {path} yet; waiting for it (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            said = True
        time.sleep(poll)


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


def claimed(properties: Any) -> bool:
    """Whether a row's Properties carry a non-empty ``hal.claimed`` (text or parsed)."""
    if isinstance(properties, str):
        if schema.HAL_CLAIMED not in properties:
            return False  # the common case, without parsing
        try:
            properties = _json.loads(properties)
        except ValueError:
            return False
    if not isinstance(properties, dict):
        return False
    hal = properties.get(schema.PROP_HAL)
    return isinstance(hal, dict) and bool(hal.get(schema.HAL_CLAIMED))


class _Table:
    """Readable rows: claim mark, time, level, logger, task, message (first line, fit to the terminal).

    The first field is ``!`` for a row that carried claims (Properties.hal.claimed),
    empty otherwise; a legend line on stderr explains it once, when the first one shows.
    """

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.width = shutil.get_terminal_size((120, 24)).columns if tty else 0
        self.header_done = False
        self.legend_due = False
        self.legend_done = False

    def line(self, row: dict[str, Any]) -> str:
        mark = CLAIM_MARK if claimed(row.get("Properties")) else ""
        if mark and not self.legend_done:
            self.legend_due = True
        t = str(row.get("TimeGenerated") or "")[:23].replace("T", " ")
        lv = str(row.get("Level") or "")
        lg = str(row.get("LoggerName") or "")
        task = str(row.get("TaskID") or "")
        msg = str(row.get("Message") or "")
        if self.tty:
            first, _, rest = msg.partition("\n")
            msg = first + (" …" if rest else "")
            text = f"{mark:<1} {t:<23}  {lv:<8} {lg[:24]:<24} {task[:12]:<12} {msg}"
            if self.width and len(text) > self.width:
                text = text[: self.width - 1] + "…"
            return text
        return "\t".join((mark, t, lv, lg, task, msg.replace("\n", "\\n")))

    def header(self) -> str | None:
        if self.header_done or not self.tty:
            return None
        self.header_done = True
        return f"{'':<1} {'TimeGenerated (UTC)':<23}  {'Level':<8} {'LoggerName':<24} {'TaskID':<12} Message"

    def legend(self) -> str | None:
        """The legend, once, after the first batch that showed a mark."""
        if not self.legend_due or self.legend_done:
            return None
        self.legend_done = True
        return CLAIM_LEGEND


def _emit(out: Any, text: str | bytes) -> None:
    if isinstance(text, str):
        text = text.encode("utf-8", "backslashreplace")
    out.write(text + b"\n")


def run_sql(conn: sqlite3.Connection, sql: str, as_json: bool, out: Any) -> int:
    try:
        cur = conn.execute(sql)
    except sqlite3.Error as exc:
        raise QueryError(
            f"--sql failed: {exc} (the workspace is opened read-only; table {TABLE})", status=2
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
    try:
        return _main(args)
    except QueryError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    except sqlite3.Error as exc:  # e.g. the file removed or damaged while following
        print(f"{PROG}: reading the workspace failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stderr.close()
        return 0


def _main(args: list[str]) -> int:
    ns = build_parser().parse_args(args)
    if ns.level:
        check_level(ns.level)  # before waiting for a workspace: a typo is said at once
    if ns.since:
        parse_since(ns.since)
    out = sys.stdout.buffer
    db = ns.db or os.environ.get("HAL_LOGGING_DB") or "hal-logs.db"
    conn = wait_for_workspace(db) if ns.follow and not ns.sql else connect_ro(db)
    if ns.sql:
        run_sql(conn, ns.sql, ns.json, out)
        out.flush()
        return 0
    where, params = _where(ns)
    cond, cond_params = where, list(params)
    if ns.dedupe:
        dd, dd_params = dedupe_clause(record_id_expr(conn), where, params)
        cond, cond_params = f"({where}) AND {dd}", [*params, *dd_params]
    cols = ", ".join(f'r."{c}"' for c in COLUMNS)
    limit = "" if ns.limit <= 0 else f" LIMIT {int(ns.limit)}"
    sql = (
        f'SELECT r.rowid, {cols} FROM "{TABLE}" AS r WHERE {cond} '
        f'ORDER BY r."TimeGenerated" DESC, r.rowid DESC{limit}'
    )
    try:
        rows = conn.execute(sql, cond_params).fetchall()
    except sqlite3.Error as exc:
        raise QueryError(f"query failed: {exc}") from exc
    rows.reverse()
    table = _Table(sys.stdout.isatty())
    last = max((r[0] for r in rows), default=0)
    _print_rows(rows, ns.json, table, out)
    if not ns.follow:
        return 0
    with contextlib.suppress(sqlite3.Error):
        last = max(last, conn.execute(f'SELECT max(rowid) FROM "{TABLE}"').fetchone()[0] or 0)
    follow_sql = (
        f'SELECT r.rowid, {cols} FROM "{TABLE}" AS r '
        f"WHERE r.rowid > ? AND r.rowid <= ? AND {cond} ORDER BY r.rowid"
    )
    top_sql = f'SELECT max(rowid) FROM "{TABLE}"'
    while True:
        # Read the top first, then the rows up to it: a row committed in
        # between is picked up next round, never skipped.
        top = conn.execute(top_sql).fetchone()[0] or 0
        if top > last:
            new = conn.execute(follow_sql, [last, top, *cond_params]).fetchall()
            last = top
            _print_rows(new, ns.json, table, out)
        else:
            time.sleep(FOLLOW_POLL)


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
    legend = table.legend()
    if legend:
        print(legend, file=sys.stderr, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
