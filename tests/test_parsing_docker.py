"""Docker's json-file lines (partials included) and ``docker logs --timestamps``."""

from __future__ import annotations

import json

import pytest

from hal_logging import _json, schema
from hal_logging.pipeline.model import Line
from hal_logging.pipeline.parsing import Parser

from .parsing_helpers import check_row, run

PIECE = 16 * 1024  # the json-file driver's split size


def go_json(obj: dict[str, str]) -> str:
    """JSON as Go's encoder writes it: HTML characters escaped, no spaces."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def json_file(entries: list[tuple[str, str, str]]) -> bytes:
    """(stream, time, line) entries as the json-file driver writes them, 16 KB partials."""
    out = []
    for stream, time, line in entries:
        data = line + "\n"
        pieces = [data[i : i + PIECE] for i in range(0, len(data), PIECE)] or ["\n"]
        for piece in pieces:
            out.append(go_json({"log": piece, "stream": stream, "time": time}) + "\n")
    return "".join(out).encode()


T1 = "2024-05-01T12:00:01.123456789Z"
T2 = "2024-05-01T12:00:02.5Z"


def test_json_file_lines_auto_detected() -> None:
    data = json_file([("stdout", T1, "hello <world> & co"), ("stderr", T2, "WARNING:x:careful")])
    for fmt in ("auto", "docker-json"):
        out, err = run(data, input_format=fmt, stream="unknown")
        check_row(out.row)
        check_row(err.row)
        assert out.row["Message"] == "hello <world> & co"
        assert out.row["TimeGenerated"] == "2024-05-01T12:00:01.123456Z"
        assert out.row["LoggerName"] == "docker.stdout"
        assert out.row["Properties"]["hal"]["stream"] == "stdout"
        assert out.row["Properties"]["hal"]["format"] == "docker-json+text"
        assert (err.row["Level"], err.row["Message"], err.stream) == (
            "WARNING",
            "careful",
            "stderr",
        )
        assert err.row["TimeGenerated"] == "2024-05-01T12:00:02.500000Z"
        assert err.row["Properties"]["hal"]["format"] == "docker-json+text:logging"


def test_partials_are_rejoined_even_interleaved() -> None:
    long_line = "".join(f"{i:06d} " for i in range(7000))  # 49 KB: three pieces
    data = json_file([("stdout", T1, long_line)])
    lines = data.splitlines(keepends=True)
    assert len(lines) == 3
    # a stderr line written between two pieces of the stdout line
    other = json_file([("stderr", T2, "between")])
    data = lines[0] + other + lines[1] + lines[2]
    records = run(data, chunks=[1000])
    between, joined = records
    assert between.row["Message"] == "between"
    assert joined.row["Message"] == long_line[: len(joined.row["Message"])]
    check_row(joined.row)
    assert joined.row["TimeGenerated"] == "2024-05-01T12:00:01.123456Z"
    assert joined.start == 0 and joined.end == len(data)
    # a 49 KB line fits the 64 KB limit: rejoined whole
    assert joined.row["Message"] == long_line.rstrip()  # trailing blanks are not kept


def test_partial_held_start_and_finish() -> None:
    first = json_file([("stdout", T1, "x" * (PIECE + 10))]).splitlines(keepends=True)[0]
    parser = Parser(stream="unknown", source="s", trusted={})
    assert parser.feed(Line(first.rstrip(b"\n"), "unknown", 0, len(first), 1.0)) == []
    assert parser.held_start == 0
    [rec] = parser.finish()  # the container died mid-line: what we have is kept
    assert rec.row["Message"] == "x" * PIECE and (rec.start, rec.end) == (0, len(first))


def test_huge_line_in_partials_is_cut_with_original_length() -> None:
    long_line = "y" * (200 * 1024)
    [rec] = run(json_file([("stdout", T1, long_line)]))
    check_row(rec.row)
    assert rec.row["Message"].endswith(schema.TRUNCATION_MARKER)
    assert rec.row["Properties"]["hal"]["original_length"]["Message"] == len(long_line)


def test_wire_line_inside_json_file_keeps_its_own_time() -> None:
    wire_row = {schema.WIRE_VERSION_KEY: 1, **dict.fromkeys(schema.COLUMN_NAMES, "")}
    wire_row.update(
        TimeGenerated="2024-05-01T11:59:59.000001Z",
        Level="ERROR",
        Message="<b>",
        Properties={"k": 1},
    )
    line = _json.dumps(wire_row).decode()
    [rec] = run(json_file([("stdout", T1, line)]))
    check_row(rec.row)
    assert rec.row["TimeGenerated"] == "2024-05-01T11:59:59.000001Z"
    assert (rec.row["Level"], rec.row["Message"]) == ("ERROR", "<b>")
    assert rec.row["Properties"]["hal"]["format"] == "docker-json+wire"


def test_traceback_on_stderr_interleaved_with_stdout() -> None:
    tb = [
        "Traceback (most recent call last):",
        '  File "/app/a.py", line 1, in <module>',
        "    main()",
        "ValueError: bad",
    ]
    entries = [
        ("stderr", T1, tb[0]),
        ("stderr", T1, tb[1]),
        ("stdout", T2, "progress"),
        ("stderr", T1, tb[2]),
        ("stderr", T1, tb[3]),
        ("stdout", T2, "done"),
    ]
    records = run(json_file(entries))
    msgs = [(r.stream, r.row["Message"]) for r in records]
    # the group stays open for its stream until a line that ends it (or the deadline)
    assert msgs == [("stdout", "progress"), ("stdout", "done"), ("stderr", "ValueError: bad")]
    exc = records[2].row["Properties"]["exception"]
    assert exc["stacktrace"] == "\n".join(tb)
    assert records[2].row["Properties"]["hal"]["format"] == "docker-json+traceback"


def test_progress_bar_inside_json_file() -> None:
    [rec] = run(json_file([("stderr", T1, "\r 10%|#\r 50%|#####\r100%|##########|")]))
    assert rec.row["Message"] == "100%|##########|"


def test_docker_timestamps() -> None:
    data = (
        b"2024-05-01T12:00:00.123456789Z hello\n"
        b"2024-05-01T12:00:01.000000000Z ERROR:agent:boom\n"
        b"not prefixed\n"
    )
    hello, boom, plain = run(data, stream="stdout")
    assert (hello.row["Message"], hello.row["TimeGenerated"]) == (
        "hello",
        "2024-05-01T12:00:00.123456Z",
    )
    assert hello.row["Properties"]["hal"]["format"] == "docker-timestamps+text"
    assert (boom.row["Level"], boom.row["Message"]) == ("ERROR", "boom")
    assert plain.row["Properties"]["hal"]["format"] == "text"
    # Chosen explicitly, a looser prefix is accepted too; raw keeps the line as it is.
    [loose] = run(b"2024-05-01T12:00:00Z hi\n", input_format="docker-timestamps")
    assert loose.row["Message"] == "hi"
    [raw] = run(b"2024-05-01T12:00:00.123456789Z hello\n", input_format="raw")
    assert raw.row["Message"] == "2024-05-01T12:00:00.123456789Z hello"


def test_raw_format_does_not_unwrap_json_file() -> None:
    [rec] = run(json_file([("stdout", T1, "hi")]), input_format="raw")
    assert rec.row["Properties"]["hal"]["format"] == "json"


def test_unknown_input_format_is_refused() -> None:
    with pytest.raises(ValueError, match="input_format"):
        Parser(stream="stdout", source="s", trusted={}, input_format="syslog")


def test_partial_closed_by_deadline() -> None:
    first = json_file([("stdout", T1, "x" * (PIECE + 10))]).splitlines(keepends=True)[0]
    parser = Parser(stream="unknown", source="s", trusted={}, multiline_timeout=2.0)
    assert parser.feed(Line(first.rstrip(b"\n"), "unknown", 0, len(first), 10.0)) == []
    assert parser.poll(11.0) == []
    [rec] = parser.poll(12.5)
    assert rec.row["Message"] == "x" * PIECE and parser.held_start is None
