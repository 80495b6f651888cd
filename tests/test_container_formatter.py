"""JsonFormatter / ConsoleFormatter / bind / adapter, in-process (issue 2)."""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import decimal
import logging
import logging.config
import re
import sys
import threading
import uuid
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter as PjlJsonFormatter

import hal_logging
from hal_logging import BenchmarkLoggerAdapter, ConsoleFormatter, JsonFormatter, get_context_logger
from hal_logging.context import normalize_context
from hal_logging.schema import LEVELS, MAX_FIELD_BYTES, TRUNCATION_MARKER

from .container_helpers import captured, strict_loads, wire_row

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
CTX = {"RunID": "run-1", "TaskID": "task-1", "Benchmark": "bench", "AgentName": "agent-a"}


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    __str__ = __repr__


# --- the wire line ----------------------------------------------------------


def test_plain_record_is_a_row_with_marker_and_context() -> None:
    with captured(context=CTX) as cap:
        cap.logger.info("hello %s", "world")
    line = cap.lines()[0]
    assert line.startswith('{"_hal":1,"TimeGenerated":')
    row = wire_row(line)
    assert row["_hal"] == 1
    assert row["Message"] == "hello world"
    assert row["Level"] == "INFO"
    assert row["LoggerName"] == "test.container"
    assert ISO.match(row["TimeGenerated"])
    assert {k: row[k] for k in CTX} == CTX
    assert row["VMName"] == "" and row["LogType"] == "AgentLog"
    assert row["Properties"]["src"].startswith("test_container_formatter:")
    assert "hal" not in row["Properties"]  # Properties.hal belongs to the VM side


def test_time_generated_is_the_record_time_in_utc() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
    record.created = 1714564800.123456  # 2024-05-01T12:00:00.123456Z
    row = wire_row(JsonFormatter(context={}).format(record))
    assert row["TimeGenerated"] == "2024-05-01T12:00:00.123456Z"


@pytest.mark.parametrize(
    ("levelno", "column", "name"),
    [
        (5, "DEBUG", "TRACE"),
        (10, "DEBUG", None),
        (25, "INFO", "NOTICE"),
        (30, "WARNING", None),
        (45, "ERROR", "SEVERE"),
        (60, "CRITICAL", "FATAL!"),
    ],
)
def test_level_is_always_one_of_the_five(levelno: int, column: str, name: str | None) -> None:
    if name:
        logging.addLevelName(levelno, name)
    try:
        with captured() as cap:
            cap.logger.log(levelno, "x")
        row = cap.one()
    finally:
        if name:
            logging._levelToName.pop(levelno, None)
            logging._nameToLevel.pop(name, None)
    assert row["Level"] == column and row["Level"] in LEVELS
    if name:
        assert row["Properties"]["level_name"] == name


def test_extra_fields_go_to_properties_in_call_order() -> None:
    with captured() as cap:
        cap.logger.info("m", extra={"zeta": 1, "alpha": [1, 2], "mid": {"k": "v"}})
    props = cap.one()["Properties"]
    assert [k for k in props if k != "src"] == ["zeta", "alpha", "mid"]
    assert props["alpha"] == [1, 2] and props["mid"] == {"k": "v"}


def test_context_named_extra_sets_the_column_not_properties() -> None:
    with captured(context=CTX) as cap:
        cap.logger.info("m", extra={"HAL_TASK_ID": "t-9", "agent_name": "b", "LogType": "Custom"})
    row = cap.one()
    assert row["TaskID"] == "t-9" and row["AgentName"] == "b" and row["LogType"] == "Custom"
    assert row["RunID"] == "run-1"
    assert not {"HAL_TASK_ID", "agent_name", "LogType"} & set(row["Properties"])


def test_dict_message_is_merged_into_properties() -> None:
    with captured() as cap:
        cap.logger.info({"message": "done", "score": 0.5, 3: "three"})
    row = cap.one()
    assert row["Message"] == "done"
    assert row["Properties"]["score"] == 0.5 and row["Properties"]["3"] == "three"


def test_static_fields_and_source_switch() -> None:
    fmt = JsonFormatter(context={}, static_fields={"image": "agent:1"}, source=False)
    with captured(formatter=fmt) as cap:
        cap.logger.info("m")
    assert cap.one()["Properties"] == {"image": "agent:1"}


# --- exceptions as data -----------------------------------------------------


def _chained() -> BaseException:
    try:
        try:
            try:
                dict[str, int]()["missing"]
            except KeyError:
                int("x")  # implicit context: "During handling of..."
        except ValueError as err:
            raise RuntimeError("could not parse") from err  # explicit cause
    except RuntimeError as err:
        return err
    raise AssertionError("unreachable")


def test_exception_is_type_message_and_full_chained_stacktrace() -> None:
    exc = _chained()
    with captured() as cap:
        cap.logger.error("failed", exc_info=exc)
    lines = cap.lines()
    assert len(lines) == 1
    row = wire_row(lines[0])
    assert row["Message"] == "failed" and row["Level"] == "ERROR"
    data = row["Properties"]["exception"]
    assert list(data) == ["type", "message", "stacktrace"]
    assert data["type"] == "RuntimeError" and data["message"] == "could not parse"
    stack = data["stacktrace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in stack
    assert "During handling of the above exception, another exception occurred:" in stack
    assert "The above exception was the direct cause of the following exception:" in stack
    assert stack.endswith("RuntimeError: could not parse")


def test_exception_type_is_qualified_like_the_traceback() -> None:
    with captured() as cap:
        try:
            raise decimal.InvalidOperation("bad")
        except decimal.InvalidOperation:
            cap.logger.exception("x")
    data = cap.one()["Properties"]["exception"]
    assert data["stacktrace"].endswith(f"{data['type']}: bad")
    assert data["type"].endswith("InvalidOperation") and "." in data["type"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are 3.11+")
def test_exception_group_is_kept_whole() -> None:
    with captured() as cap:
        try:
            group = getattr(builtins, "ExceptionGroup")  # noqa: B009 (3.11+; mypy targets 3.10)
            raise group("many", [ValueError("a"), TypeError("b")])
        except Exception:
            cap.logger.exception("group")
    data = cap.one()["Properties"]["exception"]
    assert data["type"] == "ExceptionGroup"
    assert "ValueError: a" in data["stacktrace"] and "TypeError: b" in data["stacktrace"]


def test_stack_info_goes_to_properties() -> None:
    with captured() as cap:
        cap.logger.info("where", stack_info=True)
    assert "test_stack_info_goes_to_properties" in cap.one()["Properties"]["stack"]


# --- never raises, never loses ----------------------------------------------


def _awkward() -> dict[str, Any]:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    return {
        "cycle": cycle,
        "loop": loop,
        "tuple_key": {(1, 2): "t", None: "n", 1.5: "f"},
        "nan": float("nan"),
        "inf": [float("inf"), float("-inf")],
        "raw": b"\xff\xfebytes",
        "when": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 5, 1),
        "money": decimal.Decimal("1.10"),
        "error": ValueError("inside"),
        "bad": RaisingRepr(),
        "bad_key": {RaisingRepr(): 1},
        "big": 2**100,
        "uid": uuid.UUID(int=1),
        "set": {1},
        "surrogate": "a\ud800b",
        "cls": int,
    }


def test_awkward_values_give_strict_json_and_keep_the_record() -> None:
    with captured() as cap:
        cap.logger.warning("awkward", extra=_awkward())
    row = cap.one()  # strict: NaN/Infinity would raise here
    props = row["Properties"]
    assert row["Message"] == "awkward"
    assert props["nan"] is None and props["inf"] == [None, None]
    assert props["money"] == "1.10" and props["big"] == str(2**100)
    assert props["when"].startswith("2024-05-01T12:00:00")
    assert "ValueError" in props["error"] and "inside" in props["error"]
    assert "RaisingRepr" in props["bad"]
    assert "circular" in str(props["cycle"]) and "circular" in str(props["loop"])
    assert props["tuple_key"]["(1, 2)"] == "t"
    assert props["surrogate"] == "a\ufffdb"


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ("%d items", ("x",)),  # bad format argument
        ("%s %s", ("only one",)),  # missing argument
        (RaisingRepr(), ()),  # message object that cannot be printed
        ("lone \udcff surrogate", ()),
        (ValueError("an exception as the message"), ()),
        (None, ()),
    ],
)
def test_bad_messages_still_give_one_record(msg: Any, args: tuple[Any, ...]) -> None:
    with captured() as cap:
        cap.logger.info(msg, *args)
    row = cap.one()
    assert isinstance(row["Message"], str)
    if isinstance(msg, str) and args:
        assert row["Message"] == msg and "format_error" in row["Properties"]


def test_reserved_extra_names_do_not_raise_through_the_adapter() -> None:
    with captured() as cap:
        adapter = BenchmarkLoggerAdapter(cap.logger, {"name": "gpt", "msg": 1, "run_id": "r"})
        adapter.info("m", extra={"module": "mine", "k": 2})
    row = cap.one()
    assert row["LoggerName"] == "test.container" and row["RunID"] == "r"
    assert {k: row["Properties"][k] for k in ("name", "msg", "module", "k")} == {
        "name": "gpt",
        "msg": 1,
        "module": "mine",
        "k": 2,
    }


def test_message_over_64kb_is_cut_and_marked() -> None:
    text = "é" * MAX_FIELD_BYTES  # 2 bytes each: 128 KB of UTF-8
    with captured() as cap:
        cap.logger.info(text)
    row = cap.one()
    message = row["Message"]
    assert message.endswith(TRUNCATION_MARKER)
    assert len(message.encode("utf-8")) <= MAX_FIELD_BYTES
    assert text.startswith(message[: -len(TRUNCATION_MARKER)])
    assert row["Properties"]["original_length"]["Message"] == 2 * MAX_FIELD_BYTES


def test_huge_properties_are_kept_within_the_field_limit() -> None:
    with captured() as cap:
        try:
            raise ValueError("x" * 100_000)
        except ValueError:
            cap.logger.exception(
                "big", extra={"blob": "b" * 200_000, "small": 1, "many": list(range(30_000))}
            )
    row = cap.one()
    props = row["Properties"]
    assert len(strict_loads_len(props)) <= MAX_FIELD_BYTES
    assert props["small"] == 1
    assert props["blob"].startswith("bbb") and props["blob"].endswith(TRUNCATION_MARKER)
    assert props["exception"]["type"] == "ValueError"
    assert props["original_length"]["Properties"] > 300_000


def strict_loads_len(props: dict[str, Any]) -> bytes:
    import json

    return json.dumps(props, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_format_never_raises_even_on_a_broken_record() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
    del record.exc_info  # a record some library built by hand, badly
    line = JsonFormatter(context={}).format(record)
    row = wire_row(line)
    assert row["Message"] == "m" and "format_error" in row["Properties"]


# --- OpenTelemetry trace context --------------------------------------------


def test_active_span_adds_trace_and_span_ids() -> None:
    from opentelemetry import trace

    ctx = trace.SpanContext(
        trace_id=0x0123456789ABCDEF0123456789ABCDEF,
        span_id=0x0123456789ABCDEF,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    with captured() as cap:
        cap.logger.info("outside")
        with trace.use_span(trace.NonRecordingSpan(ctx)):
            cap.logger.info("inside")
    outside, inside = cap.rows()
    assert "trace_id" not in outside["Properties"]
    assert inside["Properties"]["trace_id"] == "0123456789abcdef0123456789abcdef"
    assert inside["Properties"]["span_id"] == "0123456789abcdef"


# --- bind / unbind ----------------------------------------------------------


def test_bind_scopes_fields_and_unbind_removes_them() -> None:
    with captured() as cap:
        with hal_logging.bind(step=1, phase="plan"):
            cap.logger.info("a")
            with hal_logging.bind(step=2):
                cap.logger.info("b")
            cap.logger.info("c", extra={"phase": "call wins"})
        cap.logger.info("d")
        hal_logging.bind(sticky=True)
        cap.logger.info("e")
        hal_logging.unbind("sticky", "never-bound")
        cap.logger.info("f")
    props = [{k: v for k, v in r["Properties"].items() if k != "src"} for r in cap.rows()]
    assert props == [
        {"step": 1, "phase": "plan"},
        {"step": 2, "phase": "plan"},
        {"step": 1, "phase": "call wins"},
        {},
        {"sticky": True},
        {},
    ]


def test_bind_with_a_context_column_name_sets_the_column() -> None:
    with captured(context=CTX) as cap:
        with hal_logging.bind(task_id="task-2"):
            cap.logger.info("m")
    assert cap.one()["TaskID"] == "task-2"


def test_bind_is_per_thread() -> None:
    barrier = threading.Barrier(2, timeout=10)

    def worker(n: int) -> None:
        with hal_logging.bind(worker=n):
            barrier.wait()  # both bound at the same time
            cap.logger.info("w")
            barrier.wait()

    with captured() as cap, hal_logging.bind(main=True):
        threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        cap.logger.info("main")
    rows = cap.rows()
    workers = sorted(r["Properties"]["worker"] for r in rows if r["Message"] == "w")
    assert workers == [1, 2]
    assert all("main" not in r["Properties"] for r in rows if r["Message"] == "w")
    assert [r["Properties"]["main"] for r in rows if r["Message"] == "main"] == [True]


def test_bind_is_per_asyncio_task() -> None:
    async def task(n: int, started: asyncio.Event, go: asyncio.Event) -> None:
        with hal_logging.bind(task=n):
            started.set()
            await go.wait()
            cap.logger.info("t")

    async def main() -> None:
        go = asyncio.Event()
        events = [asyncio.Event() for _ in range(3)]
        tasks = [asyncio.create_task(task(n, events[n], go)) for n in range(3)]
        for e in events:
            await e.wait()
        go.set()
        await asyncio.gather(*tasks)

    with captured() as cap:
        asyncio.run(main())
    assert sorted(r["Properties"]["task"] for r in cap.rows()) == [0, 1, 2]


# --- adapter ------------------------------------------------------------------


def test_adapter_merges_context_and_call_extra_wins() -> None:
    with captured(context={"RunID": "env-run"}) as cap:
        log = get_context_logger(
            cap.logger.name,
            {"run_id": "r1", "HAL_TASK_ID": "t1", "model": "m1"},
            required_fields=["run_id", "task_id"],
        )
        log.info("a")
        log.info("b", extra={"model": "m2"})
        log.bind(step=4).info("c")
    a, b, c = cap.rows()
    assert (a["RunID"], a["TaskID"], a["Properties"]["model"]) == ("r1", "t1", "m1")
    assert b["Properties"]["model"] == "m2"
    assert c["Properties"]["step"] == 4 and c["Properties"]["model"] == "m1"


def test_get_context_logger_names_every_missing_field() -> None:
    with pytest.raises(ValueError, match="missing required context field") as info:
        get_context_logger(
            "x",
            {"run_id": "r", "benchmark": ""},
            required_fields=["run_id", "task_id", "benchmark"],
        )
    assert "task_id" in str(info.value) and "benchmark" in str(info.value)
    assert "run_id" not in str(info.value).split("field(s)")[1].split(";")[0]
    # a column counts under any spelling
    get_context_logger("x", {"RunID": "r"}, required_fields=["run_id", "HAL_RUN_ID"])


def test_normalize_context_accepts_three_spellings_and_rejects_typos() -> None:
    assert normalize_context(
        {"run_id": "a", "TaskID": "b", "HAL_BENCHMARK": "c", "vm_name": None}
    ) == {
        "RunID": "a",
        "TaskID": "b",
        "Benchmark": "c",
    }
    with pytest.raises(TypeError, match="run_idd"):
        normalize_context({"run_idd": "x"})


# --- formatters as classes ----------------------------------------------------


def test_json_formatter_is_a_python_json_logger_formatter_usable_from_dictconfig() -> None:
    assert issubclass(JsonFormatter, PjlJsonFormatter)
    logger = logging.getLogger("test.container.dictconfig")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "by_class": {"class": "hal_logging.JsonFormatter", "format": "%(message)s"},
                "by_factory": {"()": "hal_logging.JsonFormatter", "static_fields": {"k": 1}},
            },
            "handlers": {
                "a": {"class": "hal_logging.formatter.StdoutHandler", "formatter": "by_class"},
                "b": {"class": "hal_logging.formatter.StdoutHandler", "formatter": "by_factory"},
            },
            "loggers": {logger.name: {"handlers": ["a", "b"], "level": "INFO", "propagate": False}},
        }
    )
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    try:
        with redirect_stdout(buf):
            logger.info("via dictConfig")
    finally:
        logger.handlers.clear()
    rows = [wire_row(line) for line in buf.getvalue().splitlines()]
    assert [r["Message"] for r in rows] == ["via dictConfig"] * 2
    assert rows[1]["Properties"]["k"] == 1


def test_console_formatter_is_one_readable_line() -> None:
    with captured(formatter=ConsoleFormatter()) as cap, hal_logging.bind(step=3):
        cap.logger.warning("tool %s failed", "bash", extra={"code": 2, "why": "exit status"})
    (line,) = cap.lines()
    assert not line.startswith("{")
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} WARNING +test\.container: tool bash failed", line)
    assert "step=3" in line and "code=2" in line and "why='exit status'" in line


def test_console_formatter_shows_the_traceback_indented() -> None:
    with captured(formatter=ConsoleFormatter()) as cap:
        cap.logger.error("boom", exc_info=_chained())
    lines = cap.lines()
    assert "ERROR" in lines[0] and "boom" in lines[0]
    assert all(line.startswith("    ") for line in lines[1:])
    assert lines[-1].strip() == "RuntimeError: could not parse"


def test_strict_loads_helper_rejects_nan() -> None:  # the helper must be able to fail
    with pytest.raises(ValueError):
        strict_loads('{"a": NaN}')
