"""Other loggers' JSON, produced by the real libraries, mapped onto the columns."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from .parsing_helpers import check_row, run, structlog_printing


@pytest.fixture
def std_logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    logger = logging.getLogger("test.parsing.foreign")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buf, handler
    finally:
        logger.removeHandler(handler)


def rows(text: str, **kw: object) -> list[dict]:
    records = run(text.encode(), **kw)  # type: ignore[arg-type]
    for rec in records:
        check_row(rec.row)
    return [r.row for r in records]


def test_python_json_logger(
    std_logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    from pythonjsonlogger.json import JsonFormatter

    logger, buf, handler = std_logger
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.warning("hello %s", "x", extra={"user": "u1", "RunID": "claimed-run"})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("boom")
    handler.setFormatter(JsonFormatter())
    logger.info("default format")
    first, second, third = rows(buf.getvalue(), trusted={"RunID": "run-1"})
    assert (first["Level"], first["Message"], first["LoggerName"]) == (
        "WARNING",
        "hello x",
        "test.parsing.foreign",
    )
    assert first["Properties"]["user"] == "u1"
    assert first["RunID"] == "run-1"
    assert first["Properties"]["hal"]["claimed"] == {"RunID": "claimed-run"}
    assert first["Properties"]["hal"]["format"] == "json:python-json-logger"
    assert "asctime" not in first["Properties"]
    exc = second["Properties"]["exception"]
    assert second["Level"] == "ERROR" and exc["type"] == "ZeroDivisionError"
    assert exc["message"] == "division by zero" and exc["stacktrace"].startswith("Traceback")
    assert third["Message"] == "default format" and third["Level"] == "INFO"
    assert third["LoggerName"] == "docker.stdout"


def test_structlog() -> None:
    import structlog

    logger, buf = structlog_printing(
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    )
    logger.warning("structured", tokens=3)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.exception("failed")
    warn, err = rows(buf.getvalue())
    assert (warn["Level"], warn["Message"]) == ("WARNING", "structured")
    assert warn["Properties"]["tokens"] == 3
    assert warn["Properties"]["hal"]["format"] == "json:structlog"
    assert "original_level" not in warn["Properties"]["hal"]  # "warning" is just lower case
    assert warn["TimeGenerated"] != "2024-05-01T12:00:00.000000Z"  # its own time, not the read time
    assert err["Level"] == "ERROR"
    assert err["Properties"]["exception"]["type"] == "ZeroDivisionError"


def test_structlog_dict_tracebacks() -> None:
    import structlog

    logger, buf = structlog_printing(
        structlog.processors.dict_tracebacks,
        structlog.processors.JSONRenderer(),
    )
    try:
        raise KeyError("k")
    except KeyError:
        logger.exception("dict tb")
    [row] = rows(buf.getvalue())
    exc = row["Properties"]["exception"]
    assert exc["type"] == "KeyError" and "'k'" in exc["message"]
    assert "frames" in exc["stacktrace"]


def test_loguru_serialize() -> None:
    from loguru import logger

    buf = io.StringIO()
    sink = logger.add(buf, serialize=True)
    try:
        logger.bind(task="t1").success("loguru msg")
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("lboom")
    finally:
        logger.remove(sink)
    ok, err = rows(buf.getvalue())
    assert (ok["Level"], ok["Message"]) == ("INFO", "loguru msg")
    assert ok["Properties"]["task"] == "t1"
    assert ok["Properties"]["hal"]["original_level"] == "SUCCESS"
    assert ok["Properties"]["hal"]["format"] == "json:loguru"
    assert ok["LoggerName"] == __name__
    assert ok["Properties"]["loguru"]["function"] == "test_loguru_serialize"
    exc = err["Properties"]["exception"]
    assert err["Level"] == "ERROR"
    assert (exc["type"], exc["message"]) == ("ZeroDivisionError", "division by zero")
    assert "Traceback" in exc["stacktrace"] and "lboom" not in exc["stacktrace"]


@pytest.mark.parametrize(
    ("line", "level", "message", "time"),
    [
        (
            '{"msg": "m", "severity": "WARN", "ts": 1714564800.25}',
            "WARNING",
            "m",
            "2024-05-01T12:00:00.250000Z",
        ),
        (
            '{"message": "m", "level": 40, "time": 1714564800123}',
            "ERROR",
            "m",
            "2024-05-01T12:00:00.123000Z",
        ),
        (
            '{"msg": "m", "level": "fatal", "@timestamp": "2024-05-01T14:00:00+02:00"}',
            "CRITICAL",
            "m",
            "2024-05-01T12:00:00.000000Z",
        ),
        ('{"msg": "m", "level": "chatty"}', "INFO", "m", None),
    ],
)
def test_common_keys(line: str, level: str, message: str, time: str | None) -> None:
    [row] = rows(line + "\n")
    assert (row["Level"], row["Message"]) == (level, message)
    if time:
        assert row["TimeGenerated"] == time
    assert row["Properties"]["hal"]["format"] == "json"


def test_json_without_message_keeps_the_line_and_keys() -> None:
    [row] = rows('{"step": 1, "loss": 0.5}\n')
    assert row["Message"] == '{"step": 1, "loss": 0.5}'
    assert row["Properties"]["step"] == 1 and row["Properties"]["loss"] == 0.5


@pytest.mark.parametrize("line", ["[1, 2, 3]", '"just a string"', "{not json}", "{}x"])
def test_json_that_is_not_an_object_is_text(line: str) -> None:
    [row] = rows(line + "\n")
    assert row["Message"] == line
    assert row["Properties"]["hal"]["format"] == "text"


def test_stdlib_nan_and_dict_reprs() -> None:
    nan, repr_line = rows('{"message": "m", "loss": NaN, "best": Infinity}\n{\'a\': 1}\n')
    assert nan["Message"] == "m" and nan["Properties"]["loss"] is None
    assert nan["Properties"]["best"] is None
    assert repr_line["Message"] == "{'a': 1}"
    assert repr_line["Properties"]["hal"]["format"] == "text"
