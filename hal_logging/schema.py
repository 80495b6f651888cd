"""The row schema: defined once, everything else is derived from it.

One row of the Log Analytics table ``BenchmarkRuns_CL`` (docs/contract.md §1). The
container-side formatter writes rows of this shape, the VM-side parser produces
them, the SQLite workspace stores them, and ``hal-logging schema`` prints the
table and DCR definitions from the same tuple below. Nothing else may be sent
as a column: Azure drops unknown columns but still bills them.

This module must stay import-light (stdlib only): it is imported inside every
container by :func:`hal_logging.configure`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

ColumnType = Literal["datetime", "string", "dynamic"]

TABLE_NAME: Final = "BenchmarkRuns_CL"
STREAM_NAME: Final = "Custom-BenchmarkRuns_CL"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table.

    ``env`` and ``flag`` are set for context columns: the environment variable
    the container and the VM side read it from, and the forwarder's flag.
    """

    name: str
    type: ColumnType
    description: str
    env: str | None = None
    flag: str | None = None


COLUMNS: Final[tuple[Column, ...]] = (
    Column("TimeGenerated", "datetime", "The record's own time, ISO 8601 UTC with microseconds."),
    Column("Level", "string", "DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    Column("Message", "string", "The message, at most 64 KB of UTF-8 (cut with a visible marker)."),
    Column("LoggerName", "string", "Python logger name; docker.stdout/docker.stderr/docker for raw text."),
    Column("RunID", "string", "Benchmark run id.", "HAL_RUN_ID", "--run-id"),
    Column("TaskID", "string", "Task id within the run.", "HAL_TASK_ID", "--task-id"),
    Column("Benchmark", "string", "Benchmark name.", "HAL_BENCHMARK", "--benchmark"),
    Column("AgentName", "string", "Agent name.", "HAL_AGENT_NAME", "--agent-name"),
    Column("VMName", "string", "Azure VM name.", "HAL_VM_NAME", "--vm-name"),
    Column("ExecutionMode", "string", "How the run executes (e.g. docker, vm, local).", "HAL_EXECUTION_MODE", "--execution-mode"),
    Column("ExecutedBy", "string", "Who started the run.", "EXECUTED_BY", "--executed-by"),
    Column("LogType", "string", "AgentLog (container output) or VMOperation (VM side).", "HAL_LOG_TYPE", "--log-type"),
    Column("Properties", "dynamic", "Everything else, one JSON object."),
)

COLUMN_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in COLUMNS)
COLUMN_SET: Final[frozenset[str]] = frozenset(COLUMN_NAMES)
STRING_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in COLUMNS if c.type == "string")

#: Context columns, in table order, with the environment variable each comes from.
CONTEXT_COLUMNS: Final[tuple[Column, ...]] = tuple(c for c in COLUMNS if c.env is not None)
#: Context columns that identify where a row belongs: the container may never override these.
IDENTITY_COLUMNS: Final[tuple[str, ...]] = ("RunID", "TaskID")

LEVELS: Final[tuple[str, ...]] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_NUMBERS: Final[dict[str, int]] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

LOG_TYPE_AGENT: Final = "AgentLog"
LOG_TYPE_VM: Final = "VMOperation"

LOGGER_STDOUT: Final = "docker.stdout"
LOGGER_STDERR: Final = "docker.stderr"
LOGGER_MERGED: Final = "docker"

#: Per-field limit of the service (docs/facts.md §1): longer values are cut by Azure silently.
MAX_FIELD_BYTES: Final = 64 * 1024
#: Appended to a cut value so the cut is visible in the table.
TRUNCATION_MARKER: Final = "…[truncated by hal-logging]"

#: The wire line (docs/contract.md §2) is a row plus this marker as its FIRST key, so the VM
#: side recognises a line written by ``configure()`` from its first bytes.
WIRE_VERSION_KEY: Final = "_hal"
WIRE_VERSION: Final = 1
WIRE_PREFIX: Final[bytes] = b'{"_hal":1,'

# Keys inside Properties that other tools rely on (docs/contract.md §1).
PROP_EXCEPTION: Final = "exception"  # {"type", "message", "stacktrace"} (OpenTelemetry names)
PROP_TRACE_ID: Final = "trace_id"
PROP_SPAN_ID: Final = "span_id"
PROP_HAL: Final = "hal"  # pipeline metadata, written by the VM side only
EXCEPTION_KEYS: Final[tuple[str, ...]] = ("type", "message", "stacktrace")

# Keys inside Properties.hal.
HAL_STREAM: Final = "stream"  # stdout | stderr | unknown
HAL_RECORD_ID: Final = "record_id"  # stable for the same source bytes
HAL_FORMAT: Final = "format"  # how the line was understood (wire, json, text, traceback, ...)
HAL_CLAIMED: Final = "claimed"  # context the container claimed that differs from the trusted one
HAL_ORIGINAL_LENGTH: Final = "original_length"  # {field: byte length before the 64 KB cut}
HAL_ORIGINAL_TIME: Final = "original_time"  # a TimeGenerated Azure would have replaced
HAL_OFFSET: Final = "offset"  # byte offset of the record in its source
STREAMS: Final[tuple[str, ...]] = ("stdout", "stderr", "unknown")


def truncate_utf8(value: str, limit: int = MAX_FIELD_BYTES) -> tuple[str, int | None]:
    """Cut ``value`` to at most ``limit`` bytes of UTF-8, marker included.

    Returns the (possibly cut) string and the original UTF-8 length when a cut
    happened, else ``None``. Cuts on a character boundary, never mid-sequence.
    The cheap length check first keeps the common case fast: a str of n code
    points is at most 4n bytes of UTF-8.
    """
    if len(value) * 4 <= limit:
        return value, None
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return value, None
    room = limit - len(TRUNCATION_MARKER.encode("utf-8"))
    head = encoded[:room].decode("utf-8", "ignore")
    return head + TRUNCATION_MARKER, len(encoded)


def empty_row() -> dict[str, Any]:
    """A row with every column present: strings empty, Properties an empty object."""
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES, "")
    row["Properties"] = {}
    return row


# ---------------------------------------------------------------------------
# Derived definitions: SQLite table, Log Analytics table, DCR.
# ---------------------------------------------------------------------------

_SQLITE_TYPES: Final[dict[str, str]] = {"datetime": "TEXT", "string": "TEXT", "dynamic": "TEXT"}
_KQL_TYPES: Final[dict[str, str]] = {"datetime": "datetime", "string": "string", "dynamic": "dynamic"}


def sqlite_ddl(table: str = TABLE_NAME) -> str:
    """CREATE TABLE for the local workspace: the thirteen columns, plus a unique record id.

    ``_record_id`` is the workspace's own bookkeeping (Properties.hal.record_id
    copied out, so a row is never stored twice); it is not a column of the
    Azure table and is never sent.
    """
    cols = ",\n  ".join(f'"{c.name}" {_SQLITE_TYPES[c.type]}' for c in COLUMNS)
    return (
        f'CREATE TABLE IF NOT EXISTS "{table}" (\n  {cols},\n'
        '  "_record_id" TEXT UNIQUE\n)'
    )


def table_columns() -> list[dict[str, str]]:
    """Columns as the Log Analytics Tables API declares them."""
    return [
        {"name": c.name, "type": _KQL_TYPES[c.type], "description": c.description} for c in COLUMNS
    ]


def stream_declaration() -> dict[str, Any]:
    """The DCR ``streamDeclarations`` entry for the stream."""
    return {STREAM_NAME: {"columns": [{"name": c.name, "type": _KQL_TYPES[c.type]} for c in COLUMNS]}}


def dcr_properties(
    dce_resource_id: str = "${DCE_RESOURCE_ID}",
    workspace_resource_id: str = "${WORKSPACE_RESOURCE_ID}",
    destination: str = "logAnalyticsWorkspace",
    transform_kql: str = "source",
) -> dict[str, Any]:
    """The ``properties`` object of a Data Collection Rule for this table."""
    return {
        "dataCollectionEndpointId": dce_resource_id,
        "streamDeclarations": stream_declaration(),
        "destinations": {
            "logAnalytics": [{"workspaceResourceId": workspace_resource_id, "name": destination}]
        },
        "dataFlows": [
            {
                "streams": [STREAM_NAME],
                "destinations": [destination],
                "transformKql": transform_kql,
                "outputStream": f"Custom-{TABLE_NAME}",
            }
        ],
    }
