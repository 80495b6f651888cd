"""Formatters: one wire line per record (JSON), or one readable line for humans.

:class:`JsonFormatter` writes the wire line of docs/contract.md §2: the row's thirteen
columns in table order, preceded by the version marker ``"_hal":1`` as the
first key, so the VM side recognises our lines from their first bytes
(``schema.WIRE_PREFIX``) and only checks and enriches them.

It subclasses python-json-logger's formatter so ``logging.config.dictConfig``
users can name ``hal_logging.JsonFormatter`` (and keep ``static_fields``), but
:meth:`JsonFormatter.format` is our own fast path: one dict copied from a
template built once, orjson (``hal_logging._json``) for the dump, the time
prefix cached per second. See benchmarks/formatter.py for the measured cost.

Contract of ``format()``: it never raises and always returns exactly one line
of strict JSON holding the message. Anything orjson refuses (cycles, odd keys,
lone surrogates, objects whose ``__repr__`` raises) takes a slower path that
rebuilds the value with readable stand-ins; an error inside the formatter
itself still yields a row, with ``Properties.format_error`` saying what broke.

What goes where:

- ``Message``: ``record.getMessage()``; over 64 KB of UTF-8 it is cut with the
  visible marker and ``Properties.original_length.Message`` keeps the length.
  A dict logged as the message (python-json-logger's idiom) is merged into
  Properties; its ``"message"`` key, if any, becomes the Message.
- Context columns: from the formatter's ``context`` (``configure()`` passes the
  environment plus its overrides). A bound or ``extra=`` field named like a
  context column (``task_id``, ``TaskID``, ``HAL_TASK_ID``) sets that column
  for that record instead of a Properties key. The VM side replaces context
  columns it knows with trusted values anyway (docs/contract.md §3).
- ``Properties``: bound fields, then ``extra=`` fields (the call wins), then
  ``exception`` = {type, message, stacktrace} (the stacktrace is Python's own
  text, chained causes and contexts included), ``stack`` (``stack_info=True``),
  ``trace_id``/``span_id`` when an OpenTelemetry span is active, ``level_name``
  for a custom level (Level itself is always one of the five), and ``src`` =
  ``module:function:line`` of the call. Properties is kept within the 64 KB
  field limit too (Azure would cut a longer dynamic value into invalid JSON).
  ``Properties.hal`` is never written here: it belongs to the VM side.

``extra=`` fields are found by scanning ``record.__dict__`` back from its end
to the last attribute ``LogRecord.__init__`` sets (everything added later
follows those), which keeps records without extras cheap. Bound fields are
attached to the record when it is created (configure()'s record factory), so
a record formatted later in another thread (QueueListener) keeps them.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any, TextIO

import orjson
from pythonjsonlogger.json import JsonFormatter as _PjlJsonFormatter

from hal_logging import _json
from hal_logging._json import _default as _json_default
from hal_logging.context import _BOUND, CONTEXT_ALIASES, bound_fields, full_context
from hal_logging.schema import (
    COLUMN_NAMES,
    LEVELS,
    MAX_FIELD_BYTES,
    PROP_EXCEPTION,
    PROP_SPAN_ID,
    PROP_TRACE_ID,
    TRUNCATION_MARKER,
    WIRE_VERSION,
    WIRE_VERSION_KEY,
    truncate_utf8,
)

#: Record attribute set by hal_logging's record factory: the fields bound when the
#: record was created (so a record formatted later, in another thread, keeps them).
BOUND_ATTR = "_hal_bound"
#: Record attribute holding extra fields whose names clash with LogRecord's own
#: attributes (``name``, ``msg``, ...): the adapter puts them here, we unpack them.
EXTRA_ATTR = "_hal_extra"

#: Attributes every LogRecord has (plus those formatters add): not user fields.
RESERVED_ATTRS: frozenset[str] = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 1, "x", None, None).__dict__
) | {"message", "asctime", "taskName", BOUND_ATTR, EXTRA_ATTR}

#: Attributes LogRecord.__init__ sets (before anything else can be added).
_INIT_ATTRS: frozenset[str] = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 1, "x", None, None).__dict__
)
_LEVEL_SET = frozenset(LEVELS)
#: A str of n code points is at most 4n bytes of UTF-8: below this no cut is possible.
_SAFE_CHARS = MAX_FIELD_BYTES // 4
#: Keep Properties a little under the field limit: the row needs a margin.
_PROPS_BUDGET = MAX_FIELD_BYTES - 512
#: Stack traces over this get their middle cut out (the head says where, the tail what).
_STACK_LIMIT = 32 * 1024


def level_column(levelno: int) -> str:
    """Level column for any level number: custom levels map to the nearest standard one below."""
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def _exception_type_name(exc_type: type[BaseException]) -> str:
    """The type as Python's traceback prints it (``ValueError``, ``pkg.mod.Error``)."""
    name = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "?")
    module = getattr(exc_type, "__module__", None)
    if module not in (None, "builtins", "__main__"):
        name = f"{module}.{name}"
    return str(name)


def cut_middle(text: str, limit: int = _STACK_LIMIT) -> str:
    """Keep the head and the tail of a long text within ``limit`` UTF-8 bytes, marked."""
    if len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    half = (limit - len(TRUNCATION_MARKER.encode("utf-8")) - 2) // 2
    head = raw[:half].decode("utf-8", "ignore")
    tail = raw[-half:].decode("utf-8", "ignore")
    return f"{head}\n{TRUNCATION_MARKER}\n{tail}"


def exception_data(exc_info: Any) -> dict[str, str]:
    """``{type, message, stacktrace}`` (OpenTelemetry's names) for an exc_info tuple.

    The stacktrace is exactly what Python would print (``traceback.format_exception``):
    chained causes and contexts, exception groups, 3.11 caret lines; so both a
    human and the VM side's traceback parser can read it.
    """
    exc_type, exc_value, exc_tb = exc_info
    try:
        stack = "".join(traceback.format_exception(exc_type, exc_value, exc_tb)).rstrip("\n")
    except Exception as err:  # a broken exception object must not cost the record
        stack = f"<traceback unavailable: {_json.safe_str(err)}>"
    return {
        "type": _exception_type_name(exc_type),
        "message": cut_middle(_json.safe_str(exc_value), 4096) if exc_value is not None else "",
        "stacktrace": cut_middle(stack),
    }


def _column_value(value: Any) -> str:
    """A context column's value from a bound or extra field: a str within the field limit."""
    text = value if type(value) is str else _json.safe_str(value)
    return text if len(text) <= _SAFE_CHARS else truncate_utf8(text)[0]


def _trace_context() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active OpenTelemetry span, if any.

    Only looks when ``opentelemetry.trace`` is already imported: if nobody
    imported it, no span can be active, and logging must not pay an import.
    """
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    try:
        ctx = otel.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    except Exception:
        return None


#: Compact strict JSON that never raises (lone surrogates become U+FFFD).
dumps_strict = _json.dumps


def _fit_properties(props: dict[str, Any]) -> dict[str, Any]:
    """Shrink Properties to the 64 KB field limit, biggest values first, each cut visibly."""
    sizes = {k: len(dumps_strict(v)) + len(k) + 4 for k, v in props.items()}
    total = sum(sizes.values()) + 2
    original = total
    out = dict(props)
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= _PROPS_BUDGET:
            break
        keep = max(1024, sizes[key] - (total - _PROPS_BUDGET) - 256)
        value = out[key]
        if key == PROP_EXCEPTION and isinstance(value, dict):
            value = {k: cut_middle(_json.safe_str(v), keep // 2) for k, v in value.items()}
        else:
            text = value if isinstance(value, str) else dumps_strict(value).decode("utf-8")
            value = truncate_utf8(text, keep)[0]
        out[key] = value
        total += len(dumps_strict(value)) + len(key) + 4 - sizes[key]
    if total > _PROPS_BUDGET:  # thousands of small keys: keep a readable prefix
        text = dumps_strict(props).decode("utf-8")
        out = {"truncated": truncate_utf8(text, _PROPS_BUDGET - 1024)[0]}
    out["original_length"] = {**(out.get("original_length") or {}), "Properties": original}
    return out


class JsonFormatter(_PjlJsonFormatter):
    """The wire-line formatter (see the module docstring).

    ``context`` gives the context columns (default: the environment, with
    ``LogType`` = ``AgentLog``). ``source`` adds ``Properties.src``
    (``module:function:line``). Constructor arguments of python-json-logger's
    formatter are accepted so ``dictConfig`` entries keep working;
    ``static_fields`` go into Properties, the format string is ignored (the
    row's shape is fixed).
    """

    def __init__(
        self,
        fmt: Any = None,
        datefmt: str | None = None,
        style: str = "%",
        validate: bool = True,
        *,
        context: Mapping[str, str] | None = None,
        source: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(fmt, datefmt, style, validate, **kwargs)
        ctx = full_context(context)
        template: dict[str, Any] = {WIRE_VERSION_KEY: WIRE_VERSION}
        for col in COLUMN_NAMES:
            template[col] = ctx.get(col, "")
        template["Properties"] = None
        self._template = template
        self.context = {k: v for k, v in ctx.items()}
        self.source = source
        self._static = dict(self.static_fields)
        self._time_cache: tuple[int, str] = (-1, "")

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _time_prefix(secs: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))

    def _time(self, created: float) -> str:
        """TimeGenerated for a timestamp: ISO 8601 UTC with microseconds."""
        secs = int(created)
        return f"{self._time_prefix(secs)}.{int((created - secs) * 1_000_000):06d}Z"

    @staticmethod
    def _message(record: logging.LogRecord, props: dict[str, Any]) -> str:
        msg = record.msg
        if isinstance(msg, dict):
            fields = {k if isinstance(k, str) else _json.safe_str(k): v for k, v in msg.items()}
            message = fields.pop("message", "")
            props.update(fields)
            return message if isinstance(message, str) else _json.safe_str(message)
        try:
            return record.getMessage()
        except Exception as err:
            # logger.info("%d", "x"): the stdlib would print "--- Logging error ---"
            # and lose the record; keep the template and the arguments instead.
            props["format_error"] = f"{type(err).__name__}: {_json.safe_str(err)}"
            props["args"] = _json.safe_str(record.args)
            return _json.safe_str(msg)

    # -- the hot path -------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        """The record as one wire line (no trailing newline). Never raises."""
        try:
            return self._format(record)
        except Exception as err:
            return self._emergency(record, err)

    def _format(self, record: logging.LogRecord) -> str:
        row = self._template.copy()
        props: dict[str, Any] = self._static.copy() if self._static else {}
        d = record.__dict__

        msg = record.msg
        if type(msg) is str:
            args = record.args
            if not args:
                message = msg
            else:
                try:
                    message = msg % args
                except Exception:
                    message = self._message(record, props)
        else:
            message = self._message(record, props)
        record.message = message
        if len(message) > _SAFE_CHARS:
            message, original = truncate_utf8(message)
            if original is not None:
                props["original_length"] = {"Message": original}

        level = record.levelname
        if level not in _LEVEL_SET:
            props["level_name"] = _json.safe_str(level)
            level = level_column(record.levelno)

        created = record.created
        secs = int(created)
        cached = self._time_cache  # one tuple read: safe across threads
        if cached[0] != secs:
            cached = self._time_cache = (secs, self._time_prefix(secs))
        # created - secs is in [0, 1): the product stays below 1_000_000.
        # (%-format: measured faster than an f-string with a format spec here)
        row["TimeGenerated"] = cached[1] + ".%06dZ" % int((created - secs) * 1_000_000)  # noqa: UP031
        row["Level"] = level
        row["Message"] = message
        row["LoggerName"] = record.name

        bound = d.get(BOUND_ATTR)
        if bound is None:
            bound = _BOUND.get()
        if bound:
            self._merge(bound, row, props)
        # extra= fields: LogRecord.__init__ sets its own attributes first, so
        # everything added later (extra=, attributes set by filters) follows
        # them in __dict__ order. Scanning back from the end to the first of
        # LogRecord's own attributes finds them without walking the whole dict.
        keys = None
        for key in reversed(d):
            if key in _INIT_ATTRS:
                break
            if key not in RESERVED_ATTRS:
                if keys is None:
                    keys = [key]
                else:
                    keys.append(key)
        if keys is not None:
            aliases = CONTEXT_ALIASES
            for key in reversed(keys):
                column = aliases.get(key)
                if column is None:
                    props[key] = d[key]
                else:
                    value = d[key]
                    if value is not None:
                        row[column] = _column_value(value)
        clashing = d.get(EXTRA_ATTR)
        if clashing:
            props.update(clashing)

        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None:
            props[PROP_EXCEPTION] = exception_data(exc_info)
        elif record.exc_text:
            props[PROP_EXCEPTION] = {
                "type": "",
                "message": "",
                "stacktrace": cut_middle(record.exc_text),
            }
        if record.stack_info:
            props["stack"] = cut_middle(record.stack_info)
        if self.source and "src" not in props:
            props["src"] = f"{record.module}:{record.funcName}:{record.lineno}"
        trace = _trace_context()
        if trace is not None:
            props[PROP_TRACE_ID], props[PROP_SPAN_ID] = trace

        row["Properties"] = props
        try:
            line = orjson.dumps(row, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        except Exception:  # cycles, odd keys, surrogates...: the careful path
            line = dumps_strict(row)
        if len(line) > MAX_FIELD_BYTES and len(dumps_strict(props)) > _PROPS_BUDGET:
            row["Properties"] = _fit_properties(props)
            line = dumps_strict(row)
        return line.decode("utf-8")

    @staticmethod
    def _merge(fields: Mapping[str, Any], row: dict[str, Any], props: dict[str, Any]) -> None:
        """Add fields to Properties; those named like a context column set the column."""
        for key, value in fields.items():
            column = CONTEXT_ALIASES.get(key)
            if column is None:
                props[key] = value
            elif value is not None:
                row[column] = _column_value(value)

    def _emergency(self, record: logging.LogRecord, err: BaseException) -> str:
        """A row built from the bare minimum, when the normal path failed."""
        try:
            row = self._template.copy()
            row["TimeGenerated"] = self._time(getattr(record, "created", None) or time.time())
            row["Level"] = level_column(int(getattr(record, "levelno", logging.ERROR)))
            row["Message"] = truncate_utf8(_json.safe_str(getattr(record, "msg", "")))[0]
            row["LoggerName"] = _json.safe_str(getattr(record, "name", ""))
            row["Properties"] = {
                "format_error": f"{type(err).__name__}: {_json.safe_str(err)}",
                "args": truncate_utf8(_json.safe_str(getattr(record, "args", None)), 4096)[0],
            }
            return dumps_strict(row).decode("utf-8")
        except Exception:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            row = {WIRE_VERSION_KEY: WIRE_VERSION, **dict.fromkeys(COLUMN_NAMES, "")}
            row.update(TimeGenerated=stamp, Level="ERROR", Message="<unformattable log record>")
            row["Properties"] = {}
            return orjson.dumps(row).decode("utf-8")


# ---------------------------------------------------------------------------
# The handler configure() installs (here so dictConfig can name it:
# ``hal_logging.formatter.StdoutHandler``; ``hal_logging.configure`` is a function).
# ---------------------------------------------------------------------------


class StdoutHandler(logging.Handler):
    """Writes each record as one line to the *current* ``sys.stdout`` and flushes it.

    Looking up ``sys.stdout`` at every record (instead of keeping the stream
    given at setup) follows ``contextlib.redirect_stdout`` and test capture,
    and writes through the same object as ``print()``, so the two keep their
    order. If stdout cannot take the line (closed, broken pipe), the line goes
    to stderr rather than nowhere; the VM side reads both.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        stream: TextIO | None = sys.stdout or sys.__stdout__
        try:
            if stream is None:
                raise OSError("no stdout")
            try:
                stream.write(line)
            except UnicodeEncodeError:  # stdout in ASCII/latin-1: escape, stays valid JSON
                stream.write(_ascii_line(line))
            stream.flush()
        except Exception:
            try:
                err = sys.stderr or sys.__stderr__
                assert err is not None
                err.write(_ascii_line(line))
                err.flush()
            except Exception:
                self.handleError(record)

    def flush(self) -> None:
        stream = sys.stdout
        if stream is not None:
            try:
                stream.flush()
            except Exception:
                pass


def _ascii_line(line: str) -> str:
    """The same JSON line with every non-ASCII character escaped (key order kept)."""
    import json

    try:
        return json.dumps(json.loads(line), ensure_ascii=True, separators=(",", ":")) + "\n"
    except Exception:
        return line.encode("ascii", "backslashreplace").decode("ascii")


_COLORS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
_RESET = "\x1b[0m"


class ConsoleFormatter(logging.Formatter):
    """A readable line per record, for a terminal (``HAL_LOG_FORMAT=console``).

    ``12:00:01.234 INFO    agent.loop: step done  step=3 tokens=812``. Context
    columns are left out (they are the same on every line); fields bound or
    passed in ``extra=`` follow the message as ``key=value``. An exception adds
    its Python traceback on the following lines, indented: this format is for
    people, the JSON format is for machines. ``color`` colours the level.
    """

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as err:
            return f"<unformattable log record: {type(err).__name__}: {_json.safe_str(err)}>"

    def _format(self, record: logging.LogRecord) -> str:
        props: dict[str, Any] = {}
        message = JsonFormatter._message(record, props)
        record.message = message
        level = record.levelname if record.levelname in _LEVEL_SET else level_column(record.levelno)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        stamp = f"{stamp}.{int(record.msecs):03d}"
        shown_level = f"{level:<8} "
        if self.color:
            shown_level = f"{_COLORS.get(level, '')}{shown_level}{_RESET}"
        d = record.__dict__
        bound = d.get(BOUND_ATTR)
        fields: dict[str, Any] = dict(bound_fields() if bound is None else bound)
        fields.update((k, d[k]) for k in d if k not in RESERVED_ATTRS)
        fields.update(d.get(EXTRA_ATTR) or {})
        fields.update(props)
        message = message.rstrip().replace("\n", "\n    ")
        parts = [f"{stamp} {shown_level}{record.name}: {message}"]
        if fields:
            parts.append(
                "  " + " ".join(f"{k}={_short(v)}" for k, v in fields.items() if v is not None)
            )
        text = "".join(parts)
        if record.exc_info and record.exc_info[0] is not None:
            stack = exception_data(record.exc_info)["stacktrace"]
            text += "\n" + "\n".join("    " + line for line in stack.splitlines())
        if record.stack_info:
            text += "\n" + "\n".join("    " + line for line in record.stack_info.splitlines())
        return text


def _short(value: Any) -> str:
    """A field value on one line, quoted when it has spaces, at most 200 characters."""
    text = value if isinstance(value, str) else dumps_strict(value).decode("utf-8")
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) > 200:
        text = text[:199] + "…"
    return repr(text) if (" " in text or not text) else text
