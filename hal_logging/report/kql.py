"""The report's view in KQL, generated from :mod:`hal_logging.schema`.

The Azure Monitor workbook (:mod:`hal_logging.report.workbook`) and the
cookbook (``docs/queries.md``, section "A run at a glance") use these strings;
tests check both are up to date and pass the same KQL check. Column names go
through :func:`col`, which refuses a name the schema does not have, so a
renamed column breaks the build here instead of a query in Azure.

Every query reads only ``BenchmarkRuns_CL``: no ``join``, ``union``, user
function or cross-resource reference. That is what a Basic-plan table allows
(one table per query), so the whole view works on Basic as on Analytics. The
time range is not in the query body: the workbook's time picker (or the
caller's query time span) sets it, which is also how Basic tables want it.

The outcome of a task is read only from the forwarder's own final row: LogType
``VMOperation``, LoggerName ``hal_logging.forward`` and
``Properties.hal.format == "forwarder"``, which a container cannot produce (the
VM side forces the trusted LogType on container rows and keeps
``Properties.hal`` for itself).
"""

from __future__ import annotations

from typing import Final

from hal_logging import schema


def col(name: str) -> str:
    """A column of the table, by name; a name the schema lacks is an error, not a query."""
    if name not in schema.COLUMN_SET:
        raise KeyError(f"{name!r} is not a column of {schema.TABLE_NAME}")
    return name


T: Final = schema.TABLE_NAME
TIME, LEVEL, MESSAGE, LOGGER = col("TimeGenerated"), col("Level"), col("Message"), col("LoggerName")
RUN, TASK, VM, LOG_TYPE = col("RunID"), col("TaskID"), col("VMName"), col("LogType")
BENCHMARK, AGENT, PROPS = col("Benchmark"), col("AgentName"), col("Properties")

HAL = f"{PROPS}.{schema.PROP_HAL}"
EXC = f"{PROPS}.{schema.PROP_EXCEPTION}"
FORWARDER_LOGGER: Final = "hal_logging.forward"
IS_ERROR: Final = f'{LEVEL} in ("ERROR", "CRITICAL")'
IS_EXIT_ROW: Final = (
    f'{LOG_TYPE} == "{schema.LOG_TYPE_VM}" and {LOGGER} == "{FORWARDER_LOGGER}"'
    f' and tostring({HAL}.{schema.HAL_FORMAT}) == "forwarder"'
)
#: Where a run id goes: the workbook's parameter, or the cookbook's placeholder.
WORKBOOK_RUN: Final = "'{RunID}'"
WORKBOOK_TASK: Final = "'{TaskID}'"
COOKBOOK_RUN: Final = '"RUN_ID"'
COOKBOOK_TASK: Final = '"TASK_ID"'


#: A traceback's type and stack trace, the last columns of a ``project``.
_EXCEPTION_COLUMNS: Final = (
    f"          ExceptionType = tostring({EXC}.type),\n"
    f"          Stacktrace = tostring({EXC}.stacktrace)\n"
)


def _run_rows(run: str, condition: str = "") -> str:
    """The start of a query on one run's rows; ``condition`` narrows them further."""
    where = f"{RUN} == {run} and {condition}" if condition else f"{RUN} == {run}"
    return f"{T}\n| where {where}\n"


def runs() -> str:
    """Run picker: recent runs first, with their size (value, label)."""
    return (
        f"{T}\n"
        f"| summarize Last = max({TIME}), Tasks = dcount({TASK}), Rows = count() by {RUN}\n"
        "| order by Last desc\n"
        f'| project {RUN}, Label = strcat({RUN}, " (", Tasks, " tasks, ", Rows, " rows)")'
    )


def run_summary(run: str) -> str:
    """The run: benchmark, agent, VMs, start and end, rows, errors, billed bytes."""
    return (
        _run_rows(run)
        + f"| summarize Tasks = dcount({TASK}), Rows = count(), Errors = countif({IS_ERROR}),\n"
        f'            Warnings = countif({LEVEL} == "WARNING"), Bytes = sum(_BilledSize),\n'
        f"            Start = min({TIME}), End = max({TIME}), VMs = dcount({VM}),\n"
        f"            Benchmarks = make_set({BENCHMARK}, 5), Agents = make_set({AGENT}, 5)\n"
        "| extend MB = round(Bytes / 1e6, 2)"
    )


def task_table(run: str) -> str:
    """One row per task: outcome, exit status, duration, rows by level, first error, bytes.

    No join: the exit row and the first error are picked inside one summarize
    with sentinels (a task without an exit row keeps a null status, one without
    errors an empty first error).
    """
    return (
        _run_rows(run) + f"| extend IsExit = {IS_EXIT_ROW}\n"
        f"| extend IsErr = {IS_ERROR} and not(IsExit)\n"
        f"| extend ExitAt = iff(IsExit, {TIME}, datetime(1970-01-01)),\n"
        f"         ExitStatus = iff(IsExit, toint({PROPS}.exit_status), int(null)),\n"
        f"         Seconds = iff(IsExit, todouble({PROPS}.duration_seconds), real(null)),\n"
        f"         ErrAt = iff(IsErr, {TIME}, datetime(2100-01-01)),\n"
        f'         FirstError = iff(IsErr, {MESSAGE}, "")\n'
        f"| summarize Rows = count(), Errors = countif(IsErr), Warnings = countif({LEVEL} == "
        '"WARNING"),\n'
        f'            Debug = countif({LEVEL} == "DEBUG"), Bytes = sum(_BilledSize),\n'
        f"            Claimed = countif(isnotempty({HAL}.{schema.HAL_CLAIMED})),\n"
        f"            First = min({TIME}), Last = max({TIME}), VM = take_any({VM}),\n"
        "            arg_max(ExitAt, ExitStatus, Seconds), arg_min(ErrAt, FirstError)\n"
        f"            by {TASK}\n"
        '| extend Outcome = case(isnull(ExitStatus), "unknown", ExitStatus == 0, "ok",\n'
        '                        ExitStatus > 128 and ExitStatus < 193, "killed", "failed"),\n'
        "         DurationSeconds = coalesce(Seconds, (Last - First) / 1s)\n"
        '| extend Rank = case(Outcome in ("failed", "killed"), 0, Outcome == "unknown", 1, 2)\n'
        f"| order by Rank asc, Errors desc, {TASK} asc\n"
        f"| project {TASK}, Outcome, ExitStatus, DurationSeconds, Rows, Errors, Warnings, Debug,\n"
        "          FirstError, Bytes, Claimed, VM, First, Last"
    )


def outcomes(run: str) -> str:
    """Tasks by outcome (ok, failed, killed, unknown)."""
    return task_table(run) + "\n| summarize Tasks = count() by Outcome"


def errors(run: str) -> str:
    """The run's errors in order, with the traceback's type and stacktrace."""
    return (
        _run_rows(run, IS_ERROR) + f"| where not({IS_EXIT_ROW})\n"
        f"| project {TIME}, {TASK}, {VM}, {LOGGER}, {MESSAGE},\n"
        + _EXCEPTION_COLUMNS
        + f"| order by {TIME} asc\n"
        "| take 1000"
    )


def volume(run: str, grain: str) -> str:
    """Rows, warnings and errors over time."""
    return (
        _run_rows(run) + f'| summarize Rows = count(), Warnings = countif({LEVEL} == "WARNING"),\n'
        f"            Errors = countif({IS_ERROR}) by bin({TIME}, {grain})\n"
        f"| order by {TIME} asc"
    )


def task_log(run: str, task: str) -> str:
    """One task's log in the order it was printed (the byte offset breaks time ties)."""
    return (
        _run_rows(run, f"{TASK} == {task}")
        + f"| extend Stream = tostring({HAL}.{schema.HAL_STREAM}),\n"
        f"         Offset = tolong({HAL}.{schema.HAL_OFFSET})\n"
        f"| order by {TIME} asc, Offset asc\n"
        f"| project {TIME}, Stream, {LEVEL}, {LOGGER}, {MESSAGE},\n"
        + _EXCEPTION_COLUMNS
        + "| take 5000"
    )


def tasks_of_run(run: str) -> str:
    """Task picker of the workbook: failed tasks first."""
    return task_table(run) + f'\n| project {TASK}, Label = strcat({TASK}, " (", Outcome, ")")'


def cookbook() -> list[tuple[str, str]]:
    """(title, KQL) of the view for docs/queries.md: placeholders RUN_ID and TASK_ID."""
    return [
        ("Recent runs", runs()),
        ("The run", run_summary(COOKBOOK_RUN)),
        ("Tasks with their outcome, exit status and first error", task_table(COOKBOOK_RUN)),
        ("Tasks by outcome", outcomes(COOKBOOK_RUN)),
        ("The run's errors, with tracebacks", errors(COOKBOOK_RUN)),
        ("Log volume and errors over time", volume(COOKBOOK_RUN, "5m")),
        ("One task's log", task_log(COOKBOOK_RUN, COOKBOOK_TASK)),
    ]


COOKBOOK_BEGIN: Final = (
    "<!-- BEGIN generated: hal-logging schema --part workbook-kql (a test compares it) -->"
)
COOKBOOK_END: Final = "<!-- END generated -->"


def cookbook_markdown() -> str:
    """The generated part of docs/queries.md, markers included."""
    parts = [COOKBOOK_BEGIN]
    for title, query in cookbook():
        parts += ["", f"{title}:", "", "```kusto", query, "```"]
    parts += ["", COOKBOOK_END]
    return "\n".join(parts) + "\n"
