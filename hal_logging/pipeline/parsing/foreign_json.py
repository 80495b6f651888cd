"""JSON lines from other loggers, mapped onto the columns.

Recognised layouts (the ``format`` noted in ``Properties.hal.format``):

* ``json:loguru`` - loguru ``serialize=True``: ``{"text": ..., "record": {...}}``;
  message, level name, time, logger name, ``extra`` (to the top of Properties) and the
  exception (``{type, value}``, stacktrace from ``text``) are taken from ``record``;
  the rest of the record goes to ``Properties.loguru``.
* ``json:structlog`` - ``event`` is the message (``level``, ``timestamp``, ``logger``,
  ``exception`` as a string or as ``dict_tracebacks``' list).
* ``json:python-json-logger`` - ``message``, ``levelname``, ``asctime``, ``name``,
  ``exc_info``.
* ``json`` - anything else: the common keys ``msg``/``message``, ``level``/``severity``/
  ``lvl``, ``time``/``ts``/``timestamp``/``@timestamp``, ``logger``.

Mapped keys leave Properties; every other key stays there under its own name
(never dropped). Keys named like a context column (``RunID``...) are treated as
the container's claim for that column (the trust rule then applies). An object
without any message key keeps the whole line as the Message. A level that had to
be mapped keeps its original under ``Properties.hal.original_level``.
"""

from __future__ import annotations

from typing import Any, Final

from hal_logging import _json, schema
from hal_logging.pipeline.parsing.levels import normalize_level
from hal_logging.pipeline.parsing.timestamps import parse_time
from hal_logging.pipeline.parsing.traceback import split_exception

MESSAGE_KEYS: Final = ("message", "msg", "event", "log", "text")
LEVEL_KEYS: Final = (
    "level",
    "levelname",
    "severity",
    "lvl",
    "log.level",
    "loglevel",
    "severity_text",
)
TIME_KEYS: Final = ("timestamp", "time", "ts", "asctime", "@timestamp", "datetime", "created")
LOGGER_KEYS: Final = ("logger", "logger_name", "loggerName", "log.logger")
EXCEPTION_KEYS: Final = (
    "exception",
    "exc_info",
    "exc_text",
    "stack_trace",
    "stacktrace",
    "error.stack_trace",
)
_CONTEXT: Final = tuple(c.name for c in schema.CONTEXT_COLUMNS)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json.dumps_str(value)


def exception_from(value: Any) -> dict[str, str] | None:
    """An exception in any common JSON shape -> ``{type, message, stacktrace}``."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, str):
        lines = [ln for ln in value.rstrip().splitlines() if ln.strip()]
        kind, text = split_exception(lines[-1]) if lines else ("", "")
        return {"type": kind, "message": text, "stacktrace": value}
    if isinstance(value, dict):
        etype: Any
        message: Any
        etype = value.get("type", value.get("exc_type", ""))
        message = value.get("message", value.get("value", value.get("exc_value", "")))
        stack = value.get("stacktrace", value.get("traceback", ""))
        return {
            "type": _text(etype),
            "message": _text(message),
            "stacktrace": stack if isinstance(stack, str) else _json.dumps_str(stack),
        }
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        last = value[-1]  # structlog dict_tracebacks: outermost exception last
        return {
            "type": _text(last.get("exc_type", "")),
            "message": _text(last.get("exc_value", "")),
            "stacktrace": _json.dumps_str(value),
        }
    return {"type": "", "message": _text(value), "stacktrace": _text(value)}


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in obj:
            return key, obj[key]
    return None, None


def row_from_foreign(
    obj: dict[str, Any], line: str, hal: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """(partial row, format). The row has Level, Message, Properties and, when the
    object carried them, TimeGenerated, LoggerName and context columns."""
    record = obj.get("record")
    if "text" in obj and isinstance(record, dict) and "message" in record:
        return _loguru(obj, record, hal)
    props = dict(obj)
    row: dict[str, Any] = {}
    if "event" in obj and "message" not in obj and "msg" not in obj:
        fmt = "json:structlog"
    elif "levelname" in obj or "asctime" in obj:
        fmt = "json:python-json-logger"
    else:
        fmt = "json"

    key, value = _first(obj, MESSAGE_KEYS)
    if key is None:
        row["Message"] = line
    else:
        row["Message"] = _text(value)
        del props[key]

    key, value = _first(obj, LEVEL_KEYS)
    if key is None:
        row["Level"] = "ERROR" if _first(obj, EXCEPTION_KEYS)[1] else "INFO"
    else:
        level, exact = normalize_level(value)
        row["Level"] = level
        if not exact and not (isinstance(value, str) and value.strip().upper() == level):
            hal["original_level"] = value if isinstance(value, (str, int, float)) else _text(value)
        del props[key]

    for key in TIME_KEYS:
        if key in obj:
            when = parse_time(obj[key])
            if when is not None:
                row["TimeGenerated"] = when
                del props[key]
                break

    logger_keys = (*LOGGER_KEYS, "name") if fmt == "json:python-json-logger" else LOGGER_KEYS
    key, value = _first(obj, logger_keys)
    if key is not None and isinstance(value, str):
        row["LoggerName"] = value
        del props[key]

    key, value = _first(obj, EXCEPTION_KEYS)
    if key is not None:
        exc = exception_from(value)
        del props[key]
        if exc is not None:
            props[schema.PROP_EXCEPTION] = exc

    for col in _CONTEXT:
        if col in props:
            row[col] = _text(props.pop(col))
    row["Properties"] = props
    return row, fmt


def _loguru(
    obj: dict[str, Any], record: dict[str, Any], hal: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    rest = dict(record)
    row: dict[str, Any] = {"Message": _text(rest.pop("message"))}
    level = rest.pop("level", None)
    name = level.get("name") if isinstance(level, dict) else level
    row["Level"], exact = normalize_level(name)
    if not exact:
        hal["original_level"] = name if isinstance(name, (str, int, float)) else _text(name)
    when = rest.pop("time", None)
    if isinstance(when, dict):
        parsed = parse_time(when.get("timestamp")) or parse_time(when.get("repr"))
        if parsed is not None:
            row["TimeGenerated"] = parsed
    logger = rest.pop("name", None)
    if isinstance(logger, str):
        row["LoggerName"] = logger
    props: dict[str, Any] = {}
    extra = rest.pop("extra", None)
    if isinstance(extra, dict):
        props.update(extra)
    exc = rest.pop("exception", None)
    if isinstance(exc, dict):
        props[schema.PROP_EXCEPTION] = {
            "type": _text(exc.get("type") or ""),
            "message": _text(exc.get("value") or ""),
            # loguru's text is the formatted line, then the traceback.
            "stacktrace": _text(obj.get("text", "")).partition("\n")[2].rstrip("\n"),
        }
    elif exc is not None:
        found = exception_from(exc)
        if found is not None:
            props[schema.PROP_EXCEPTION] = found
    for col in _CONTEXT:
        if col in props:
            row[col] = _text(props.pop(col))
    props["loguru"] = rest
    others = {k: v for k, v in obj.items() if k not in ("text", "record")}
    props.update({k: v for k, v in others.items() if k not in props})
    row["Properties"] = props
    return row, "json:loguru"
