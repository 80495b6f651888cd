"""Raw Python tracebacks from real interpreters -> one ERROR row each."""

from __future__ import annotations

import sys

import pytest

from hal_logging.pipeline.model import Line
from hal_logging.pipeline.parsing import Parser

from .parsing_helpers import check_row, interpreter_output, python_interpreters, run

PROGRAM = r"""
import logging, sys
logging.basicConfig(level=logging.INFO)
kind = sys.argv[1]
print("before", flush=True)

def inner():
    d = {}
    return d["missing"] + 1

class NoMessage(Exception):
    pass

if kind == "chained":
    try:
        inner()
    except KeyError as e:
        raise RuntimeError("outer failure") from e
elif kind == "context":
    try:
        1 / 0
    except ZeroDivisionError:
        raise ValueError("while handling")
elif kind == "nomsg":
    raise NoMessage
elif kind == "group":
    raise ExceptionGroup("many", [ValueError("a"), TypeError("b"), ExceptionGroup("inner", [KeyError("k")])])
elif kind == "logger":
    try:
        inner()
    except KeyError:
        logging.getLogger("agent.step").exception("step failed")
    print("after", flush=True)
elif kind == "critical":
    try:
        inner()
    except KeyError:
        logging.getLogger("agent").critical("fatal step", exc_info=True)
    print("after", flush=True)
elif kind == "syntax":
    exec(compile("x = (1,\n", "<agent>", "exec"))
elif kind == "two":
    import traceback
    for exc in (ValueError("first"), TypeError("second")):
        try:
            raise exc
        except Exception:
            traceback.print_exc()
    print("after", flush=True)
"""

INTERPRETERS = python_interpreters()


def version_of(python: str) -> tuple[int, int]:
    out = interpreter_output(python, "import sys; print(sys.version_info[0], sys.version_info[1])")
    major, minor = out.split()
    return int(major), int(minor)


@pytest.fixture(scope="module", params=sorted(INTERPRETERS), ids=str)
def python(request: pytest.FixtureRequest) -> tuple[str, tuple[int, int]]:
    path = INTERPRETERS[request.param]
    return path, version_of(path)


def parse(python: str, kind: str, stream: str = "stderr") -> list:
    out = interpreter_output(python, PROGRAM, kind)
    records = run(out, stream=stream, chunks=[17, 4096])
    for rec in records:
        check_row(rec.row)
    return records


def only_error(records: list) -> dict:
    errors = [r.row for r in records if r.row["Level"] in ("ERROR", "CRITICAL")]
    assert len(errors) == 1, [r.row["Message"] for r in records]
    return errors[0]


def test_chained_traceback_is_one_row(python: tuple[str, tuple[int, int]]) -> None:
    records = parse(python[0], "chained")
    assert next(r.row["Message"] for r in records) == "before"
    row = only_error(records)
    exc = row["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("RuntimeError", "outer failure")
    assert row["Message"] == "RuntimeError: outer failure"
    assert "The above exception was the direct cause" in exc["stacktrace"]
    assert "KeyError: 'missing'" in exc["stacktrace"]
    assert exc["stacktrace"].startswith("Traceback (most recent call last):")
    assert row["Properties"]["hal"]["format"] == "traceback"
    if python[1] >= (3, 11):
        assert "^^" in exc["stacktrace"]  # caret lines stay in the stacktrace
    assert len(records) == 2


def test_context_chain(python: tuple[str, tuple[int, int]]) -> None:
    records = parse(python[0], "context")
    exc = only_error(records)["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("ValueError", "while handling")
    assert "During handling of the above exception" in exc["stacktrace"]
    assert len(records) == 2


def test_exception_without_message(python: tuple[str, tuple[int, int]]) -> None:
    records = parse(python[0], "nomsg")
    exc = only_error(records)["Properties"]["exception"]
    assert exc["type"] in ("NoMessage", "__main__.NoMessage")
    assert exc["message"] == ""
    assert len(records) == 2


def test_exception_group(python: tuple[str, tuple[int, int]]) -> None:
    if python[1] < (3, 11):
        pytest.skip("exception groups need Python 3.11")
    records = parse(python[0], "group")
    row = only_error(records)
    exc = row["Properties"]["exception"]
    assert exc["type"] == "ExceptionGroup"
    assert exc["message"].startswith("many (3 sub-exceptions)")
    for part in ("ValueError: a", "TypeError: b", "KeyError: 'k'", "+-+----"):
        assert part in exc["stacktrace"]
    assert len(records) == 2


@pytest.mark.parametrize("stream", ["stderr", "unknown"])
def test_logger_exception_header_joins_the_traceback(
    python: tuple[str, tuple[int, int]], stream: str
) -> None:
    records = parse(python[0], "logger", stream)
    assert [r.row["Message"] for r in records] == ["before", "step failed", "after"]
    row = records[1].row
    assert row["Level"] == "ERROR"
    assert row["Properties"]["logger"] == "agent.step"
    exc = row["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("KeyError", "'missing'")
    assert "ERROR:agent.step" not in exc["stacktrace"]
    assert row["LoggerName"] == ("docker.stderr" if stream == "stderr" else "docker")
    # The record spans the header and the traceback, contiguous with its neighbours.
    assert records[0].end == records[1].start and records[1].end == records[2].start


def test_critical_header_keeps_critical(python: tuple[str, tuple[int, int]]) -> None:
    records = parse(python[0], "critical")
    row = only_error(records)
    assert row["Level"] == "CRITICAL" and row["Message"] == "fatal step"
    assert row["Properties"]["exception"]["type"] == "KeyError"


def test_syntax_error(python: tuple[str, tuple[int, int]]) -> None:
    records = parse(python[0], "syntax")
    exc = only_error(records)["Properties"]["exception"]
    assert exc["type"] == "SyntaxError"
    assert len(records) == 2


def test_two_separate_tracebacks_are_two_rows(python: tuple[str, tuple[int, int]]) -> None:
    records = parse(python[0], "two")
    errors = [
        r.row["Properties"]["exception"]["type"]
        for r in records
        if "exception" in r.row["Properties"]
    ]
    assert errors == ["ValueError", "TypeError"]
    assert records[-1].row["Message"] == "after"


def test_error_line_without_traceback_is_released_by_next_line() -> None:
    records = run(b"ERROR:agent:just an error\nINFO:agent:fine\n")
    assert [(r.row["Level"], r.row["Message"]) for r in records] == [
        ("ERROR", "just an error"),
        ("INFO", "fine"),
    ]
    assert "exception" not in records[0].row["Properties"]


def test_deadline_closes_an_open_group() -> None:
    out = interpreter_output(sys.executable, PROGRAM, "chained")
    lines = out.splitlines(keepends=True)
    parser = Parser(stream="stderr", source="s", trusted={}, multiline_timeout=1.0)
    pos = 0
    records = []
    for i, raw in enumerate(lines):
        records += parser.feed(
            Line(raw.rstrip(b"\n"), "stderr", pos, pos + len(raw), 100.0 + i * 0.01)
        )
        pos += len(raw)
    assert [r.row["Message"] for r in records] == ["before"]
    assert parser.held_start == records[0].end  # the checkpoint must stop here
    assert parser.poll(100.5) == []  # not yet
    [tb] = parser.poll(102.0)
    assert tb.row["Properties"]["exception"]["type"] == "RuntimeError"
    assert (tb.start, tb.end) == (records[0].end, pos)
    assert parser.held_start is None
    assert parser.finish() == []


def test_header_alone_is_released_by_deadline() -> None:
    parser = Parser(stream="stdout", source="s", trusted={})
    assert parser.feed(Line(b"[ERROR] disk full", "stdout", 0, 18, 10.0)) == []
    assert parser.held_start == 0
    [rec] = parser.poll(11.5)
    assert rec.row["Level"] == "ERROR" and rec.row["Message"] == "[ERROR] disk full"


def test_huge_traceback_is_capped_and_keeps_its_end() -> None:
    frames = "".join(
        f'  File "/app/some/deep/package/module_{i}.py", line {i}, in function_{i}\n'
        f"    function_{i + 1}(argument_one, argument_two)\n"
        for i in range(2500)
    )
    data = f"Traceback (most recent call last):\n{frames}RecursionError: too deep\nafter\n".encode()
    records = run(data, stream="stderr", chunks=[4096])
    for rec in records:
        check_row(rec.row)
    assert [r.row["Message"] for r in records][-1] == "after"
    parts = records[:-1]
    # 5002 lines, 2000 per part: three rows, contiguous, the last one knows the exception.
    assert [r.row["Properties"]["hal"]["part"] for r in parts] == [1, 2, 3]
    assert all(r.row["Level"] == "ERROR" for r in parts)
    assert [r.start for r in records[1:]] == [r.end for r in records[:-1]]
    assert records[-1].end == len(data)
    last = parts[-1].row["Properties"]["exception"]
    assert (last["type"], last["message"]) == ("RecursionError", "too deep")
    first = parts[0].row["Properties"]
    stack = first["exception"]["stacktrace"]
    assert "lines omitted by hal-logging" in stack
    assert stack.startswith("Traceback (most recent call last):")
    assert first["hal"]["original_length"]["Properties.exception.stacktrace"] > 64 * 1024


def test_coloured_traceback_of_python_313() -> None:
    python = INTERPRETERS.get("3.13")
    if python is None:
        pytest.skip("no Python 3.13 here")
    out = interpreter_output(python, PROGRAM, "chained", extra_env={"PYTHON_COLORS": "1"})
    assert b"\x1b[" in out  # really coloured
    records = run(out, stream="stderr")
    row = only_error(records)
    exc = row["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("RuntimeError", "outer failure")
    assert "\x1b" not in exc["stacktrace"] and "^^" in exc["stacktrace"]


def test_seed_format_header_joins_the_traceback() -> None:
    data = (
        b"2024-05-01 10:00:00,123 - hal.agent - ERROR - tool crashed\n"
        b"Traceback (most recent call last):\n"
        b'  File "/app/a.py", line 3, in run\n'
        b"    tool()\n"
        b"OSError: [Errno 28] No space left on device\n"
        b"2024-05-01 10:00:01,000 - hal.agent - INFO - retrying\n"
    )
    crash, retry = run(data)
    assert crash.row["Message"] == "tool crashed"
    assert crash.row["TimeGenerated"] == "2024-05-01T10:00:00.123000Z"
    assert crash.row["Properties"]["logger"] == "hal.agent"
    exc = crash.row["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("OSError", "[Errno 28] No space left on device")
    assert retry.row["Message"] == "retrying"


def test_traceback_cut_short_then_logging_resumes() -> None:
    data = (
        b"Traceback (most recent call last):\n"
        b'  File "/app/agent.py", line 42, in <module>\n'
        b"    main()\n"
        b'  File "/app/agent.py", line 3\n'
        b"INFO:agent:after the cut\n"
        b"Traceback (most recent call last):\n"
        b'  File "/app/agent.py", line 9, in <module>\n'
        b"ValueError: \n"
        b"  multi-line message\n"
    )
    cut, after, other = run(data, stream="stderr")
    assert cut.row["Level"] == "ERROR"
    assert cut.row["Message"] == "Traceback (most recent call last):"
    assert cut.row["Properties"]["exception"]["stacktrace"].endswith("line 3")
    assert (after.row["Level"], after.row["Message"]) == ("INFO", "after the cut")
    exc = other.row["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("ValueError", "")
    assert exc["stacktrace"].endswith("  multi-line message")
