"""What a run report shows, read from the local workspace with SQL aggregates.

Why aggregates in SQL: a run can hold millions of rows. Counting, summing and
finding each task's first error is a handful of ``GROUP BY`` scans in SQLite
(C speed, the ``(RunID, TaskID)`` index), and Python only ever sees one row per
task plus a bounded number of log lines per task (:func:`allocate_rows`). So the
report's memory and time grow with the number of tasks and the page budget, not
with the run's size.

The outcome of a task comes only from the forwarder's own final row (wrap mode
writes it after the command exited, see ``Runner.command_row``): LogType
``VMOperation``, LoggerName ``hal_logging.forward`` and ``Properties.hal.format``
``forwarder``. The container cannot write such a row: the VM side forces its
rows to the trusted LogType and keeps Properties.hal for itself, so a line that
*claims* to be the forwarder's lands as container output and cannot fake an
exit status.

No de-duplication is needed here: the workspace stores a record id once (a
UNIQUE ``_record_id``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from hal_logging import _json, schema
from hal_logging.pipeline.config import DEFAULT_PRICE_PER_GB

TABLE: Final = schema.TABLE_NAME
FORWARDER_LOGGER: Final = "hal_logging.forward"  # the runner's final-row logger
FORWARDER_FORMAT: Final = "forwarder"  # Properties.hal.format of the runner's own rows
ERROR_LEVELS: Final[tuple[str, ...]] = ("ERROR", "CRITICAL")
#: Where the default price comes from, shown next to it in the page.
PRICE_NOTE: Final = (
    "Log Analytics Analytics-plan list price, East US, as read in 2026-12 "
    "(Basic about $0.50/GB); check your region's price list"
)
DEFAULT_TAIL_ROWS: Final = 200
#: Log rows the page carries at most, over all tasks (keeps a 2,000-task page loadable).
DEFAULT_MAX_ROWS: Final = 50_000
#: Errors kept from the start of a task besides its tail, so its first error is always there.
HEAD_ERRORS: Final = 20
TIMELINE_BUCKETS: Final = 48
#: A message or a stacktrace longer than this is cut in the page (the workspace has it whole).
MESSAGE_CHARS: Final = 8_000
STACK_CHARS: Final = 20_000
CUT_MARK: Final = "…[cut in the report: {n} more characters; hal-logging query has it whole]"

OUTCOMES: Final[tuple[str, ...]] = ("ok", "failed", "killed", "unknown")
OUTCOME_LABELS: Final[dict[str, str]] = {
    "ok": "exit status 0",
    "failed": "non-zero exit status",
    "killed": "killed by a signal",
    "unknown": "still running or unknown (no exit row)",
}


class ReportError(Exception):
    """A problem the user can fix; the message (one line) says how."""


# -- SQL -------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f'"{name}"'


#: Estimated billed bytes of a row: the UTF-8 length of every column's text (the same
#: estimate the forwarder reports; Azure bills about this much).
BYTES_SQL: Final = " + ".join(
    f"ifnull(length(CAST({_q(c)} AS BLOB)), 0)" for c in schema.COLUMN_NAMES
)
_LEVEL_SUMS: Final = ", ".join(f"sum({_q('Level')} = '{lv}')" for lv in schema.LEVELS)
#: The forwarder's own final row of a task (see the module docstring).
FORWARDER_ROW_SQL: Final = (
    f"{_q('LogType')} = '{schema.LOG_TYPE_VM}' AND {_q('LoggerName')} = '{FORWARDER_LOGGER}'"
    f" AND json_extract({_q('Properties')}, '$.{schema.PROP_HAL}.{schema.HAL_FORMAT}')"
    f" = '{FORWARDER_FORMAT}'"
)
_ERROR_IN: Final = "(" + ", ".join(f"'{lv}'" for lv in ERROR_LEVELS) + ")"
# LIKE first: json_extract parses the whole Properties text, LIKE only scans it.
_CLAIMED_SQL: Final = (
    f"sum({_q('Properties')} LIKE '%\"{schema.HAL_CLAIMED}\"%' AND "
    f"json_extract({_q('Properties')}, '$.{schema.PROP_HAL}.{schema.HAL_CLAIMED}') IS NOT NULL)"
)
_CUT_SQL: Final = (
    f"sum({_q('Properties')} LIKE '%\"{schema.HAL_ORIGINAL_LENGTH}\"%' AND "
    f"json_extract({_q('Properties')}, '$.{schema.PROP_HAL}.{schema.HAL_ORIGINAL_LENGTH}')"
    " IS NOT NULL)"
)


# -- the model ---------------------------------------------------------------------------


@dataclass
class Exc:
    """``Properties.exception``: what a traceback became."""

    type: str
    message: str
    stacktrace: str


@dataclass
class LogLine:
    time: str
    level: str
    logger: str
    message: str
    stream: str
    exception: Exc | None = None
    claimed: bool = False


@dataclass
class Task:
    index: int  # position in the page: anchors are task-<index>, never the untrusted id
    task_id: str
    rows: int
    bytes: int
    levels: dict[str, int]
    first: str
    last: str
    vm: str
    claimed: int = 0
    cut: int = 0
    exit_status: int | None = None
    exit_description: str = ""
    exit_seconds: float | None = None
    first_error: str = ""
    first_error_type: str = ""
    first_error_time: str = ""
    timeline: list[tuple[int, int, int]] = field(default_factory=list)  # rows, warnings, errors
    lines: list[LogLine] = field(default_factory=list)
    shown_tail: int = 0
    shown_head_errors: int = 0

    @property
    def errors(self) -> int:
        return sum(self.levels.get(lv, 0) for lv in ERROR_LEVELS)

    @property
    def warnings(self) -> int:
        return self.levels.get("WARNING", 0)

    @property
    def outcome(self) -> str:
        return classify(self.exit_status)

    @property
    def duration(self) -> float | None:
        """The command's own run time when the forwarder wrote it, else first to last row."""
        if self.exit_seconds is not None:
            return self.exit_seconds
        return seconds_between(self.first, self.last)

    @property
    def left_out(self) -> int:
        return max(0, self.rows - len(self.lines))


@dataclass
class Run:
    run_id: str
    db: str
    generated: str
    rows: int = 0
    bytes: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    first: str = ""
    last: str = ""
    contexts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)
    timeline: list[tuple[int, int, int]] = field(default_factory=list)
    price_per_gb: float = DEFAULT_PRICE_PER_GB
    price_note: str = PRICE_NOTE
    tail_rows: int = DEFAULT_TAIL_ROWS
    max_rows: int = DEFAULT_MAX_ROWS

    @property
    def outcomes(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for t in self.tasks:
            counts[t.outcome] += 1
        return counts

    @property
    def cost_usd(self) -> float:
        return self.bytes / 1e9 * self.price_per_gb

    @property
    def shown_rows(self) -> int:
        return sum(len(t.lines) for t in self.tasks)

    @property
    def errors(self) -> int:
        return sum(self.levels.get(lv, 0) for lv in ERROR_LEVELS)

    def values(self, column: str) -> list[tuple[str, int]]:
        return self.contexts.get(column, [])


# -- helpers -----------------------------------------------------------------------------


def classify(status: int | None) -> str:
    """ok / failed / killed / unknown, from an exit status the shell way (128+N: signal N)."""
    if status is None:
        return "unknown"
    if status == 0:
        return "ok"
    if 128 < status < 128 + 65:
        return "killed"
    return "failed"


def describe_status(status: int | None) -> str:
    if status is None:
        return "no exit row"
    if classify(status) == "killed":
        n = status - 128
        try:
            name = signal.Signals(n).name
        except ValueError:
            name = f"signal {n}"
        return f"{status} (killed by {name})"
    return str(status)


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def seconds_between(a: str, b: str) -> float | None:
    ta, tb = parse_time(a), parse_time(b)
    if ta is None or tb is None:
        return None
    return max(0.0, (tb - ta).total_seconds())


_CONTROL: Final = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}


def visible(text: str, limit: int) -> str:
    """Control characters as their visible symbols (ESC shows as ␛), cut at ``limit``.

    A terminal's escape sequences (colours, cursor moves) mean nothing in a page
    and would be invisible; shown as symbols the reader sees that they were there.
    """
    if len(text) > limit:
        text = text[:limit] + CUT_MARK.format(n=len(text) - limit)
    return text.translate(_CONTROL)


def _props(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = _json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _exception(props: dict[str, Any]) -> Exc | None:
    exc = props.get(schema.PROP_EXCEPTION)
    if not isinstance(exc, dict):
        return None
    get = lambda k, n: visible(str(exc.get(k) or ""), n)  # noqa: E731
    return Exc(get("type", 500), get("message", MESSAGE_CHARS), get("stacktrace", STACK_CHARS))


def allocate_rows(wanted: Sequence[int], budget: int) -> list[int]:
    """Share ``budget`` rows between tasks that want ``wanted[i]`` each, as evenly as possible.

    Water-filling: small tasks get all they want, the rest split what is left,
    so no budget is wasted on a share a task cannot use.
    """
    give = [0] * len(wanted)
    left = max(0, budget)
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    for k, i in enumerate(order):
        share = left // (len(order) - k)
        give[i] = min(wanted[i], share)
        left -= give[i]
    return give


# -- reading -----------------------------------------------------------------------------


def connect(path: str) -> sqlite3.Connection:
    """The workspace, read-only; a clear one-line error when it is not one."""
    if not os.path.exists(path):
        raise ReportError(
            f"no workspace at {path}: ship something first (hal-logging-forward ...) or pass --db PATH"
        )
    uri = "file:" + os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace(
        "#", "%23"
    )
    try:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=10)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(f"SELECT 1 FROM {_q(TABLE)} LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise ReportError(f"{path} is not a readable hal-logging workspace ({exc})") from exc
    return conn


def known_runs(conn: sqlite3.Connection, limit: int = 5) -> list[str]:
    """The most recent run ids (for the 'unknown run' message)."""
    sql = (
        f"SELECT {_q('RunID')} FROM {_q(TABLE)} GROUP BY {_q('RunID')}"
        f" ORDER BY max({_q('TimeGenerated')}) DESC LIMIT ?"
    )
    return [r[0] for r in conn.execute(sql, (limit,))]


def load_run(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    db: str = "",
    tail_rows: int = DEFAULT_TAIL_ROWS,
    max_rows: int = DEFAULT_MAX_ROWS,
    price_per_gb: float = DEFAULT_PRICE_PER_GB,
    buckets: int = TIMELINE_BUCKETS,
) -> Run:
    """Everything the page shows for ``run_id`` (an empty :class:`Run` if it has no rows)."""
    run = Run(
        run_id=run_id,
        db=db,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        price_per_gb=price_per_gb,
        tail_rows=tail_rows,
        max_rows=max_rows,
    )
    try:
        _load(conn, run, buckets)
    except sqlite3.Error as exc:
        raise ReportError(f"reading the workspace failed: {exc}") from exc
    return run


#: The context shown in the page's header (LogType is not context there: it varies by row).
_CTX_COLS: Final[tuple[str, ...]] = tuple(
    c.name
    for c in schema.CONTEXT_COLUMNS
    if c.name not in (*schema.IDENTITY_COLUMNS, "LogType")
)
#: Sorts like the row's time, then its rowid: min()/max() of it find one row in a GROUP BY.
_TIME_KEY: Final = f"{_q('TimeGenerated')} || ' ' || printf('%020d', rowid)"
_EXIT_KEY: Final = (
    f"max(CASE WHEN {FORWARDER_ROW_SQL} AND json_extract({_q('Properties')}, '$.exit_status')"
    f" IS NOT NULL THEN {_TIME_KEY} END)"
)
_FIRST_ERROR_KEY: Final = (
    f"min(CASE WHEN {_q('Level')} IN {_ERROR_IN} AND NOT ({FORWARDER_ROW_SQL})"
    f" THEN {_TIME_KEY} END)"
)


def _load(conn: sqlite3.Connection, run: Run, buckets: int) -> None:
    t, rid = _q(TABLE), (run.run_id,)
    # 1. One pass, one row per task: counts by level, bytes, first/last time, claimed and
    # cut rows, the context columns' range, and where the exit row and first error are.
    # (Each further pass over a million rows costs about as much as this whole one.)
    ctx_range = ", ".join(f"min({_q(c)}), max({_q(c)})" for c in _CTX_COLS)
    sql = (
        f"SELECT {_q('TaskID')}, count(*), {_LEVEL_SUMS}, sum({BYTES_SQL}),"
        f" min({_q('TimeGenerated')}), max({_q('TimeGenerated')}),"
        f" {_CLAIMED_SQL}, {_CUT_SQL}, {_EXIT_KEY}, {_FIRST_ERROR_KEY}, {ctx_range}"
        f" FROM {t} WHERE {_q('RunID')} = ? GROUP BY {_q('TaskID')} ORDER BY {_q('TaskID')}"
    )
    nl = len(schema.LEVELS)
    exit_rows: dict[int, Task] = {}
    error_rows: dict[int, Task] = {}
    ranges: list[tuple[Task, list[Any]]] = []
    for i, r in enumerate(conn.execute(sql, rid)):
        levels = {lv: int(r[2 + k] or 0) for k, lv in enumerate(schema.LEVELS)}
        task = Task(
            index=i,
            task_id=str(r[0] or ""),
            rows=int(r[1]),
            bytes=int(r[2 + nl] or 0),
            levels=levels,
            first=str(r[3 + nl] or ""),
            last=str(r[4 + nl] or ""),
            vm="",
            claimed=int(r[5 + nl] or 0),
            cut=int(r[6 + nl] or 0),
        )
        run.tasks.append(task)
        if r[7 + nl]:
            exit_rows[int(r[7 + nl].rsplit(" ", 1)[1])] = task
        if r[8 + nl]:
            error_rows[int(r[8 + nl].rsplit(" ", 1)[1])] = task
        ranges.append((task, list(r[9 + nl :])))
    if not run.tasks:
        return
    run.rows = sum(x.rows for x in run.tasks)
    run.bytes = sum(x.bytes for x in run.tasks)
    run.levels = {lv: sum(x.levels[lv] for x in run.tasks) for lv in schema.LEVELS}
    run.first = min(x.first for x in run.tasks)
    run.last = max(x.last for x in run.tasks)
    _contexts(conn, run, ranges)

    # 2. Outcomes: the forwarder's last final row per task.
    for rowid, props_text, message in _rows_by_id(conn, exit_rows, "Properties", "Message"):
        task = exit_rows[rowid]
        props = _props(props_text)
        status = props.get("exit_status")
        if not isinstance(status, int) or isinstance(status, bool):
            continue
        task.exit_status = status
        task.exit_description = visible(str(message or ""), 500)
        secs = props.get("duration_seconds")
        if isinstance(secs, (int, float)) and not isinstance(secs, bool):
            task.exit_seconds = float(secs)

    # 3. First error per task.
    for rowid, when, message, props_text in _rows_by_id(
        conn, error_rows, "TimeGenerated", "Message", "Properties"
    ):
        task = error_rows[rowid]
        exc = _exception(_props(props_text))
        task.first_error = visible(str(message or ""), 300)
        # A parsed traceback's message already starts with its type: say it once.
        task.first_error_type = (
            exc.type if exc and not task.first_error.startswith(exc.type) else ""
        )
        task.first_error_time = str(when or "")

    # 4. Timelines: rows, warnings and errors per bucket of each task's life, and of the run's.
    _timelines(conn, run, buckets)

    # 5. The log lines: a bounded tail per task, failed tasks first (see allocate_rows).
    _lines(conn, run)


def _rows_by_id(
    conn: sqlite3.Connection, rowids: dict[int, Task], *columns: str
) -> list[tuple[Any, ...]]:
    ids = sorted(rowids)
    out: list[tuple[Any, ...]] = []
    cols = ", ".join(_q(c) for c in columns)
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT rowid, {cols} FROM {_q(TABLE)} WHERE rowid IN ({marks})"
        out.extend(conn.execute(sql, chunk))
    return out


def _contexts(conn: sqlite3.Connection, run: Run, ranges: list[tuple[Task, list[Any]]]) -> None:
    """The context columns' values and their row counts, from each task's min and max.

    A task's context is almost always one value per column (the VM side sets it
    once), so min == max tells it without another pass; only a column that varies
    within a task is counted with a query of its own, over that task's rows.
    """
    counts: dict[str, dict[str, int]] = {c: {} for c in _CTX_COLS}
    for task, values in ranges:
        for k, c in enumerate(_CTX_COLS):
            lo, hi = values[2 * k], values[2 * k + 1]
            if lo == hi:
                found = [(lo, task.rows)]
            else:
                found = conn.execute(
                    f"SELECT {_q(c)}, count(*) FROM {_q(TABLE)} WHERE {_q('RunID')} = ?"
                    f" AND {_q('TaskID')} = ? GROUP BY {_q(c)}",
                    (run.run_id, task.task_id),
                ).fetchall()
            for v, n in found:
                v = str(v or "")
                if v:
                    counts[c][v] = counts[c].get(v, 0) + int(n)
            if c == "VMName":
                task.vm = ", ".join(str(v) for v, _ in found if v)
    run.contexts = {c: sorted(v.items(), key=lambda kv: -kv[1]) for c, v in counts.items()}


def _julian(text: str) -> float | None:
    """SQLite's julianday() of an ISO time, computed here."""
    when = parse_time(text)
    return None if when is None else when.timestamp() / 86400.0 + 2440587.5


def _timelines(conn: sqlite3.Connection, run: Run, buckets: int) -> None:
    """Rows, warnings and errors per bucket of each task's life and of the run's.

    One small query per task over its rows (the ``(RunID, TaskID)`` index finds
    them) buckets each row twice, by the task's span and by the run's; the run's
    timeline is the sum. Measured against one query joining every row to its
    task's span: a third of the time on a million rows (no sort of the whole run).
    """
    tg, lvl = _q("TimeGenerated"), _q("Level")
    span = f"min({buckets - 1}, max(0, CAST((j - ?{{0}}) / ?{{1}} * {buckets} AS INTEGER)))"
    sql = (
        f"SELECT {span.format(3, 4)} AS b, {span.format(5, 6)} AS rb, count(*),"
        f" sum({lvl} = 'WARNING'), sum({lvl} IN {_ERROR_IN})"
        f" FROM (SELECT julianday({tg}) AS j, {lvl} FROM {_q(TABLE)}"
        f" WHERE {_q('RunID')} = ?1 AND {_q('TaskID')} = ?2) GROUP BY b, rb"
    )
    run_first, run_last = _julian(run.first), _julian(run.last)
    rf = run_first if run_first is not None else 0.0
    rspan = max((run_last or rf) - rf, 1e-11)
    totals = [[0, 0, 0] for _ in range(buckets)]
    for task in run.tasks:
        f, last = _julian(task.first), _julian(task.last)
        f = f if f is not None else rf
        tspan = max((last or f) - f, 1e-11)
        timeline = [[0, 0, 0] for _ in range(buckets)]
        for b, rb, n, w, e in conn.execute(sql, (run.run_id, task.task_id, f, tspan, rf, rspan)):
            for target, k in ((timeline, b), (totals, rb)):
                if k is not None and 0 <= k < buckets:
                    target[k][0] += int(n)
                    target[k][1] += int(w or 0)
                    target[k][2] += int(e or 0)
        task.timeline = [(a, b_, c) for a, b_, c in timeline]
    run.timeline = [(a, b_, c) for a, b_, c in totals]


_LINE_COLS: Final = ", ".join(
    _q(c) for c in ("TimeGenerated", "Level", "LoggerName", "Message", "Properties")
)


def _lines(conn: sqlite3.Connection, run: Run) -> None:
    t = _q(TABLE)
    # The last rows stored (rowid order: the index on (RunID, TaskID) hands them out
    # without reading the task's other rows), then shown in time order. For one
    # forwarder per task that is its last rows in time; measured on a million-row run,
    # 20x faster than ORDER BY TimeGenerated, which reads and sorts every row of a task.
    tail_sql = (
        f"SELECT rowid, {_LINE_COLS} FROM {t} WHERE {_q('RunID')} = ? AND {_q('TaskID')} = ?"
        f" ORDER BY rowid DESC LIMIT ?"
    )
    head_sql = (
        f"SELECT rowid, {_LINE_COLS} FROM {t} WHERE {_q('RunID')} = ? AND {_q('TaskID')} = ?"
        f" AND {_q('Level')} IN {_ERROR_IN} ORDER BY {_q('TimeGenerated')}, rowid LIMIT ?"
    )
    tail = max(0, run.tail_rows)
    # Tasks that went wrong get their whole tail first; the others share what is left.
    wrong = [x for x in run.tasks if x.outcome != "ok" or x.errors]
    fine = [x for x in run.tasks if not (x.outcome != "ok" or x.errors)]
    budget = max(0, run.max_rows)
    give_wrong = allocate_rows([min(x.rows, tail) for x in wrong], budget)
    give_fine = allocate_rows([min(x.rows, tail) for x in fine], budget - sum(give_wrong))
    for task, n in zip([*wrong, *fine], [*give_wrong, *give_fine], strict=True):
        found: dict[int, tuple[Any, ...]] = {}
        if n > 0:
            for r in conn.execute(tail_sql, (run.run_id, task.task_id, n)):
                found[r[0]] = r
            task.shown_tail = len(found)
            if task.errors and len(found) < task.rows:
                for r in conn.execute(head_sql, (run.run_id, task.task_id, HEAD_ERRORS)):
                    if r[0] not in found:
                        found[r[0]] = r
                        task.shown_head_errors += 1
        rows = sorted(found.values(), key=lambda r: (str(r[1] or ""), r[0]))
        task.lines = [_line(r) for r in rows]


def _line(r: tuple[Any, ...]) -> LogLine:
    props = _props(r[5])
    hal = props.get(schema.PROP_HAL)
    hal = hal if isinstance(hal, dict) else {}
    return LogLine(
        time=str(r[1] or ""),
        level=str(r[2] or ""),
        logger=visible(str(r[3] or ""), 200),
        message=visible(str(r[4] or ""), MESSAGE_CHARS),
        stream=str(hal.get(schema.HAL_STREAM) or ""),
        exception=_exception(props),
        claimed=isinstance(hal.get(schema.HAL_CLAIMED), dict),
    )
