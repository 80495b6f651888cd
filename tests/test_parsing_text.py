"""Plain text lines: levels, timestamps, terminal escapes, encoding, blank lines."""

from __future__ import annotations

import pytest

from hal_logging.pipeline.parsing.text import parse_text

from .parsing_helpers import NOW, check_row, run, structlog_printing

READ_TIME = "2024-05-01T12:00:00.000000Z"


@pytest.mark.parametrize(
    ("line", "level", "message", "logger"),
    [
        ("ERROR:agent.tools:tool failed", "ERROR", "tool failed", "agent.tools"),
        ("WARNING:root:careful: a colon", "WARNING", "careful: a colon", "root"),
        (
            "2024-05-01 10:00:00,123 - hal.agent - DEBUG - step 1 - ok",
            "DEBUG",
            "step 1 - ok",
            "hal.agent",
        ),
        ("[ERROR] disk full", "ERROR", None, None),
        ("[warn] slow", "WARNING", None, None),
        ("error: pathspec did not match", "ERROR", None, None),
        ("Warning: deprecated flag", "WARNING", None, None),
        ("2024-05-01 12:00:00.123 | CRITICAL | mod:fn:3 - down", "CRITICAL", None, None),
        ("2024-05-01T12:00:00Z [INFO] ready", "INFO", None, None),
        ('time=2024-05-01 msg="x" level=warning', "WARNING", None, None),
        ("/app/x.py:3: DeprecationWarning: old api", "WARNING", None, None),
        ("Processed 10 items", "INFO", None, None),
        ("No errors found, error count low", "INFO", None, None),
        ("FATAL could not start", "CRITICAL", None, None),
    ],
)
def test_levels(line: str, level: str, message: str | None, logger: str | None) -> None:
    info = parse_text(line)
    assert info.level == level
    assert info.message == (message if message is not None else line)
    assert info.logger == logger


@pytest.mark.parametrize(
    ("line", "time"),
    [
        ("2024-05-01 10:00:00,123 - a - INFO - m", "2024-05-01T10:00:00.123000Z"),
        ("2024-05-01T10:00:00.5+02:00 started", "2024-05-01T08:00:00.500000Z"),
        ("[2024-05-01 10:00:00] started", "2024-05-01T10:00:00.000000Z"),
        ("2024-13-01 10:00:00 not a date", None),
        ("started at 2024-05-01 10:00:00", None),  # only a leading time counts
    ],
)
def test_timestamps(line: str, time: str | None) -> None:
    assert parse_text(line).time == time


def test_rows_from_text_lines() -> None:
    data = b"hello\n\x1b[1;31mERROR:x:red\x1b[0m\nfine\n"
    hello, red, fine = run(data, stream="stderr")
    for rec in (hello, red, fine):
        check_row(rec.row)
    assert hello.row["TimeGenerated"] == READ_TIME
    assert hello.row["LoggerName"] == "docker.stderr"
    assert hello.row["Properties"]["hal"]["format"] == "text"
    assert (red.row["Level"], red.row["Message"]) == ("ERROR", "red")
    assert red.row["Properties"]["hal"]["format"] == "text:logging"
    [merged] = run(b"x\n", stream="unknown")
    assert merged.row["LoggerName"] == "docker"
    assert merged.row["Properties"]["hal"]["stream"] == "unknown"


def test_ansi_and_osc_sequences_are_removed() -> None:
    data = (
        b"\x1b]0;window title\x07\x1b[2K\x1b[32mgreen\x1b[0m and "
        b"\x1b]8;;https://example.invalid\x1b\\a link\x1b]8;;\x1b\\ \x1b[?25lhidden cursor\x1b(B\n"
    )
    [rec] = run(data)
    assert rec.row["Message"] == "green and a link hidden cursor"


def test_real_coloured_console_output() -> None:
    import structlog

    logger, buf = structlog_printing(
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.dev.ConsoleRenderer(colors=True),
    )
    logger.warning("disk almost full", free_gb=3)
    logger.error("disk full")
    raw = buf.getvalue().encode()
    assert b"\x1b[" in raw  # really coloured
    warn, err = run(raw)
    assert "\x1b" not in warn.row["Message"] and "disk almost full" in warn.row["Message"]
    assert "free_gb=3" in warn.row["Message"]
    assert (warn.row["Level"], err.row["Level"]) == ("WARNING", "ERROR")
    assert warn.row["TimeGenerated"] != READ_TIME  # the line's own timestamp


def test_invalid_utf8_replaced_and_nul_removed() -> None:
    [rec] = run(b"caf\xc3\xa9 \xff\xfe bad\x00 nul\n")
    assert rec.row["Message"] == "café \ufffd\ufffd bad nul"


def test_progress_bar_final_state_and_last_line_without_newline() -> None:
    import io

    from tqdm import tqdm

    buf = io.StringIO()
    for _ in tqdm(range(20), file=buf, mininterval=0, desc="download"):
        pass
    raw = b"start\n" + buf.getvalue().encode() + b"tail without newline"
    _start, bar, tail = run(raw, chunks=[3, 50])
    assert bar.row["Message"].startswith("download: 100%") and "20/20" in bar.row["Message"]
    assert tail.row["Message"] == "tail without newline"
    assert tail.end == len(raw)


def test_blank_lines_make_no_row_but_their_bytes_are_accounted() -> None:
    data = b"one\n\n   \n\x1b[0m\ntwo\n\n"
    one, two = run(data)
    assert (one.start, one.end) == (0, 4)
    assert two.start == 4  # the blank lines are folded into the next record's span
    assert two.row["Properties"]["hal"]["offset"] == 4
    assert two.end == len(data) - 1  # a trailing blank line has no record after it


def test_read_time_is_used_without_a_timestamp() -> None:
    [rec] = run(b"no time here\n", now=NOW + 1.5)
    assert rec.row["TimeGenerated"] == "2024-05-01T12:00:01.500000Z"


def test_an_internal_error_still_gives_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import hal_logging.pipeline.parsing.parser as parsing

    def broken(text: str) -> None:
        raise RuntimeError("simulated parser bug")

    monkeypatch.setattr(parsing, "parse_text", broken)
    [rec] = run(b"some line\n")
    check_row(rec.row)
    assert rec.row["Message"] == "some line"
    assert rec.row["Properties"]["hal"]["problems"] == [
        "parser error RuntimeError: simulated parser bug"
    ]
