"""OpenTelemetry: rows as OTel log records, and the container-side OTLP handler.

One mapping, used both by the forwarder's ``--sink otlp``
(:mod:`hal_logging.pipeline.sinks.otlp`) and by :func:`install_otel_handler`
in the container, so a row looks the same in a collector whichever way it came:

- severity number 5/9/13/17/21 for DEBUG/INFO/WARNING/ERROR/CRITICAL, severity
  text the row's Level (OTel keeps the source's own text);
- body = Message; timestamp = TimeGenerated; observed timestamp = now;
- trace context from ``Properties.trace_id`` / ``span_id`` (hex) when valid;
- attributes = Properties flattened to dotted keys (``hal.record_id``,
  ``hal.claimed.RunID``, ``exception.type`` / ``exception.message`` /
  ``exception.stacktrace`` as OTel's semantic conventions name them, user
  fields under their own names), plus ``logger.name``; lists stay arrays,
  values nested deeper than 4 levels become JSON text, integers beyond 64 bits
  become text (the protobuf would refuse them and the SDK drop them);
- instrumentation scope = LoggerName (as the SDK's own logging bridge does);
- resource = the run context: ``service.name`` (AgentName, else
  ``hal-agent``), ``host.name`` (VMName) and ``hal.run_id``, ``hal.task_id``,
  ``hal.benchmark``, ``hal.agent_name``, ``hal.vm_name``,
  ``hal.execution_mode``, ``hal.executed_by``, ``hal.log_type``.

This module is imported by ``configure()`` only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set, and imports the OpenTelemetry SDK only inside its functions:
``import hal_logging`` never loads it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from hal_logging import _json
from hal_logging.schema import (
    CONTEXT_COLUMNS,
    PROP_SPAN_ID,
    PROP_TRACE_ID,
)

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
    from opentelemetry.sdk.resources import Resource

SEVERITY_NUMBERS: Final[dict[str, int]] = {
    "DEBUG": 5,
    "INFO": 9,
    "WARNING": 13,
    "ERROR": 17,
    "CRITICAL": 21,
}
RESOURCE_KEYS: Final[dict[str, str]] = {
    "RunID": "hal.run_id",
    "TaskID": "hal.task_id",
    "Benchmark": "hal.benchmark",
    "AgentName": "hal.agent_name",
    "VMName": "hal.vm_name",
    "ExecutionMode": "hal.execution_mode",
    "ExecutedBy": "hal.executed_by",
    "LogType": "hal.log_type",
}
DEFAULT_SERVICE_NAME: Final = "hal-agent"
LOGGER_ATTRIBUTE: Final = "logger.name"
MAX_DEPTH: Final = 4
_INT64 = (-(2**63), 2**63 - 1)

INSTALL_HINT: Final = "install the OpenTelemetry extra: pip install 'hal-logging[otel]'"


def resource_attributes(context: Mapping[str, Any]) -> dict[str, str]:
    """Resource attributes for a run context (column name -> value); empty values left out."""
    attrs: dict[str, str] = {}
    agent = context.get("AgentName")
    attrs["service.name"] = agent if isinstance(agent, str) and agent else DEFAULT_SERVICE_NAME
    vm = context.get("VMName")
    if isinstance(vm, str) and vm:
        attrs["host.name"] = vm
    for column, key in RESOURCE_KEYS.items():
        value = context.get(column)
        if isinstance(value, str) and value:
            attrs[key] = value
    return attrs


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    return _json.dumps_str(value)


def _value(value: Any, depth: int) -> Any:
    """A value the OTLP encoder takes: scalars, arrays of them; deeper structure as JSON."""
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return _json.dumps_str(value)
        return [_json.dumps_str(v) if isinstance(v, (dict, list)) else _scalar(v) for v in value]
    return _scalar(value)


def flatten(
    props: Mapping[str, Any], prefix: str = "", depth: int = 0, out: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Properties as OTel attributes: nested objects as dotted keys (see the module docstring)."""
    attrs: dict[str, Any] = {} if out is None else out
    for key, value in props.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth + 1 >= MAX_DEPTH:
                attrs[name] = _json.dumps_str(value)
            elif value:
                flatten(value, f"{name}.", depth + 1, attrs)
            else:
                attrs[name] = "{}"
        else:
            attrs[name] = _value(value, depth)
    return attrs


def _hex_id(value: Any, length: int) -> int:
    if isinstance(value, str) and len(value) == length:
        try:
            return int(value, 16)
        except ValueError:
            return 0
    return 0


def parse_time_ns(text: Any) -> int | None:
    """ISO 8601 (``...Z`` or with an offset) -> Unix nanoseconds; None when unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        stamp = datetime.fromisoformat(
            text.replace("Z", "+00:00", 1) if text.endswith("Z") else text
        )
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    seconds = int(stamp.timestamp())
    return seconds * 1_000_000_000 + stamp.microsecond * 1000


def row_attributes(row: Mapping[str, Any]) -> tuple[dict[str, Any], int, int]:
    """(attributes, trace_id, span_id) for a row; ids 0 when absent or invalid."""
    props = row.get("Properties")
    props = props if isinstance(props, dict) else {}
    trace_id = _hex_id(props.get(PROP_TRACE_ID), 32)
    span_id = _hex_id(props.get(PROP_SPAN_ID), 16)
    rest = props
    if trace_id and span_id:
        rest = {k: v for k, v in props.items() if k not in (PROP_TRACE_ID, PROP_SPAN_ID)}
    else:
        trace_id = span_id = 0
    attrs = flatten(rest)
    logger = row.get("LoggerName")
    attrs[LOGGER_ATTRIBUTE] = logger if isinstance(logger, str) else ""
    return attrs, trace_id, span_id


def row_to_log_record(row: Mapping[str, Any], observed_ns: int | None = None) -> Any:
    """The row as an OpenTelemetry API ``LogRecord`` (imports the SDK)."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        set_span_in_context,
    )

    attrs, trace_id, span_id = row_attributes(row)
    level = row.get("Level")
    level = level if isinstance(level, str) and level in SEVERITY_NUMBERS else "INFO"
    context = None
    if trace_id and span_id:
        span = NonRecordingSpan(
            SpanContext(
                trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
            )
        )
        context = set_span_in_context(span)
    else:
        from opentelemetry.context import Context

        context = Context()  # not the caller's current span: the row says which, if any
    message = row.get("Message")
    return LogRecord(
        timestamp=parse_time_ns(row.get("TimeGenerated")),
        observed_timestamp=observed_ns if observed_ns is not None else time.time_ns(),
        context=context,
        severity_text=level,
        severity_number=SeverityNumber(SEVERITY_NUMBERS[level]),
        body=message if isinstance(message, str) else _json.dumps_str(message),
        attributes=attrs,
    )


def row_context(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The row's context columns, in table order (the key of its resource)."""
    return tuple(str(row.get(c.name) or "") for c in CONTEXT_COLUMNS)


def make_resource(context: Mapping[str, Any]) -> Resource:
    from opentelemetry.sdk.resources import Resource

    return Resource.create(resource_attributes(context))


def to_readable(
    row: Mapping[str, Any], resource: Resource, observed_ns: int | None = None
) -> ReadableLogRecord:
    """The row as an SDK ``ReadableLogRecord``, ready for an exporter."""
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    logger = row.get("LoggerName")
    scope = InstrumentationScope(logger if isinstance(logger, str) and logger else "hal_logging")
    return ReadableLogRecord(
        log_record=row_to_log_record(row, observed_ns),
        resource=resource,
        instrumentation_scope=scope,
    )


# ---------------------------------------------------------------------------
# Container side
# ---------------------------------------------------------------------------


class OtelHandler(logging.Handler):
    """A logging handler exporting each record through an OTel ``LoggerProvider``.

    Each record is first made into the row the JSON formatter writes (same
    Properties, exception, trace context) and redacted like the forwarder does
    (credential shapes and values of secret-named variables), then mapped as
    described in the module docstring. The provider's BatchLogRecordProcessor
    sends in the background; it drops the oldest records when its queue (2048)
    is full, which is why the forwarder's ``--sink otlp`` exports synchronously
    instead. Records of OpenTelemetry's own loggers are not exported (they would
    feed back into the exporter), and ``handle`` takes no lock, so the export
    thread logging an error can never deadlock against ``flush``.
    """

    def __init__(self, provider: LoggerProvider, context: Mapping[str, str]) -> None:
        super().__init__()
        from hal_logging.formatter import JsonFormatter
        from hal_logging.redaction import Redactor, plan_env_values

        self.provider = provider
        self.row_formatter = JsonFormatter(context=context)
        names = [n for n in os.environ.get("HAL_LOGGING_REDACT_ENV", "").split(",") if n.strip()]
        self.redactor = Redactor(plan_env_values(names).values)

    def handle(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("opentelemetry"):
            return False
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            row = _json.loads(self.row_formatter.format(record))
            row.pop("_hal", None)
            self.redactor.redact_row(row, ("TimeGenerated", "Level"))
            logger = self.provider.get_logger(record.name or "root")
            logger.emit(row_to_log_record(row))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        try:
            self.provider.force_flush(10_000)
        except Exception:
            pass

    def close(self) -> None:
        try:
            self.provider.shutdown()
        except Exception:
            pass
        super().close()


def install_otel_handler(
    root: logging.Logger, context: Mapping[str, str]
) -> logging.Handler | None:
    """Add an OTLP/HTTP exporting handler to ``root`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

    Endpoint, headers, timeout and compression come from the standard
    ``OTEL_EXPORTER_OTLP_*`` variables (read by the SDK's exporter). Returns
    the handler, or None when no endpoint is set or the SDK is not installed
    (then one line on stderr says what to install; logging to stdout goes on).
    """
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    ):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    except ImportError as err:
        print(
            f"hal_logging: OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is missing ({err}); "
            f"{INSTALL_HINT}. Logging to stdout only.",
            file=sys.stderr,
        )
        return None
    provider = LoggerProvider(resource=make_resource(context))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    handler = OtelHandler(provider, context)
    root.addHandler(handler)
    return handler
