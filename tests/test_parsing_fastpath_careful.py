"""The wire fast lane gives byte for byte the rows of the careful path.

The reference is a parser whose fast lane is off (:class:`CarefulParser`: every
wire line goes through :meth:`Parser._wire` and the record maker, as a line the
lane refuses does). The inputs are wire lines as ``configure()`` writes them and
as a container can bend them: contexts that differ from the forwarder's (claims
to keep, blanks to fill), duplicate top-level keys (a forged context after the
real one or before it), reserved logger names, a Properties.hal of its own,
times outside the writer's lifetime, terminal escapes, NUL and other control
characters, lone surrogates (``\\ud800`` escapes), fields near and over the
lane's line limit and the 64 KB field limit, and text lines between them.

Compared: each row serialised (key order included), every field of each
:class:`Record`, the parser's counters and what it holds back. ``Record.raw``
is the one field the lane may add (the careful path leaves wire rows without
it): where it does, it must be the line, and every string of the row that came
from the container must be in it verbatim (what redaction relies on).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging import schema
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing import Parser
from hal_logging.pipeline.parsing.records import _SMALL
from hal_logging.pipeline.parsing.timestamps import format_epoch

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
STARTED = NOW - 10.0  # the wrapped command's start (bounded parsers)
CONTEXT = [c.name for c in schema.CONTEXT_COLUMNS]


class CarefulParser(Parser):
    """The parser with the wire fast lane off: it takes no line."""

    def _wire_run(
        self,
        lines: list[Line],
        i: int,
        ids: list[str],
        out: list[Record],
        read_time: str | None,
        stream: str | None = None,
        fmt: str = "wire",
    ) -> int:
        return i


_TRUSTED: list[dict[str, str]] = [
    {},
    {"RunID": "run-1"},
    {"RunID": "run-1", "TaskID": "task-1", "VMName": "vm-a"},
    {"LogType": "VMOperation", "Benchmark": "swebench"},
]
_CLAIMS = st.sampled_from(["", "", "run-1", "task-1", "vm-a", "AgentLog", "bench", "other"])
_TIMES = st.sampled_from(
    [
        format_epoch(NOW - 5.0),  # inside the lifetime
        format_epoch(NOW - 4.2),
        format_epoch(NOW),  # the first read time
        format_epoch(STARTED - 2.5),  # before the command started (less the skew)
        format_epoch(STARTED - 1.5),  # a boundary second, inside
        format_epoch(NOW + 2.4),  # after the read time (plus the skew): a boundary second
        format_epoch(NOW + 600.0),  # the future
        "2024-04-01T00:00:00.000000Z",  # long before
        "2024-05-01T11:59:55.12345xZ",
        "2024-05-01 11:59:55.123456Z",
        "2024-02-30T12:00:00.123456Z",
    ]
)
_MESSAGES = st.sampled_from(
    [
        "step done",
        'quote " and back\\slash',
        "tab\there\nnewline",
        "é ☃ 😀",
        "\x1b[1mbold\x1b[0m",
        "a\x00b",
        "c\x9b1md",
        "bell\x07 and \x7f del",
        "lone \ud800 surrogate",
        "\udfff",
        "",
    ]
)
_LOGGERS = st.sampled_from(
    ["agent", "agent", "hal_logging", "hal_logging.azure", "hal_loggingx", "hal_logging_x"]
)
_BIG = [_SMALL - 400, _SMALL + 10, schema.MAX_FIELD_BYTES - 50, schema.MAX_FIELD_BYTES + 10]
_PROPERTIES = st.one_of(
    st.sampled_from(
        [
            {"step": 1},
            {},
            {"tokens": 812, "nested": {"a": [1, "x"]}},
            {"hal": {"record_id": "forged", "stream": "stderr"}},
            {"hal": None},
            {"note": "ctrl \x01\x1f", "s": "\ud83d"},
        ]
    ),
    st.sampled_from(_BIG).map(lambda n: {"blob": "x" * n}),
)


def _enc(value: Any, ascii_only: bool) -> bytes:
    """One JSON value: orjson's compact UTF-8, or the stdlib's ASCII with escapes
    (the only way to write a lone surrogate)."""
    if ascii_only:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()
    try:
        return orjson.dumps(value)
    except TypeError:  # a lone surrogate: orjson refuses it
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


@st.composite
def _wire_line(draw: st.DrawFn) -> bytes:
    """A wire line: configure()'s shape, each value drawn, sometimes bent."""
    obj: dict[str, Any] = {schema.WIRE_VERSION_KEY: 1}
    obj["TimeGenerated"] = draw(_TIMES)
    obj["Level"] = draw(st.sampled_from(["INFO", "INFO", "WARNING", "ERROR", "warn", 20]))
    msg = draw(_MESSAGES)
    if draw(st.integers(0, 12)) == 0:
        msg = msg + "m" * draw(st.sampled_from(_BIG))
    obj["Message"] = msg
    obj["LoggerName"] = draw(_LOGGERS)
    for col in CONTEXT:
        obj[col] = draw(_CLAIMS)
    if draw(st.integers(0, 15)) == 0:
        obj[draw(st.sampled_from(CONTEXT))] = draw(st.sampled_from([7, None, ["run-1"]]))
    obj["Properties"] = draw(_PROPERTIES)
    if draw(st.integers(0, 15)) == 0:
        obj[schema.WIRE_VERSION_KEY] = draw(st.sampled_from([2, True, "1"]))
    ascii_only = draw(st.integers(0, 4)) == 0
    items = [(_enc(k, False), _enc(v, ascii_only)) for k, v in obj.items()]
    change = draw(st.integers(0, 12))
    if change == 0:  # a forged context after the real one (the last value is the parsed one)
        items.append((_enc(draw(st.sampled_from(CONTEXT)), False), _enc("forged", False)))
    elif change == 1:  # ... or before it (the first place is the key's place)
        items.insert(1, (_enc(draw(st.sampled_from(CONTEXT)), False), _enc("forged", False)))
    elif change == 2:  # the marker or a column twice
        key = draw(st.sampled_from([schema.WIRE_VERSION_KEY, "Message", "Properties"]))
        items.append((_enc(key, False), _enc(draw(st.sampled_from([1, 2, "x", {}])), False)))
    elif change == 3:  # columns in another order
        items[1:] = draw(st.permutations(items[1:]))
    elif change == 4:  # a key too many, or one too few
        if draw(st.booleans()):
            items.append((b'"Extra"', b"1"))
        else:
            del items[draw(st.integers(1, len(items) - 1))]
    return b"{" + b",".join(k + b":" + v for k, v in items) + b"}"


_OTHER = st.sampled_from(
    [
        b"",
        b"print one",
        b"ERROR:agent.tools:boom",
        b"Traceback (most recent call last):",
        b"ValueError: bad tool output",
        b'{"event": "llm call", "level": "info"}',
        b'{"_hal":1,not json',
        b"\xff\xfe invalid utf-8",
        b'{"_hal":1,"TimeGenerated":"2024-05-01T11:59:00.000000Z","Message":"\xff"}',
    ]
)
_LINES = st.one_of(_wire_line(), _wire_line(), _wire_line(), _wire_line(), _OTHER)


def _view(records: list[Record]) -> list[tuple[Any, ...]]:
    """Everything about a record but ``raw``: the row's bytes (key order included)."""
    return [
        (orjson.dumps(r.row), r.stream, r.start, r.end, r.source, r.size, r.columns, r.prepared)
        for r in records
    ]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _check_raw(fast: Record, careful: Record, lines: dict[int, bytes], trusted: set[str]) -> None:
    """``raw`` is the careful path's, or the lane's vouched line (see Record.raw)."""
    if fast.raw is None or fast.raw == careful.raw:
        return
    assert careful.raw is None
    assert fast.raw == lines[fast.start]  # the line itself
    row = fast.row
    props = {k: v for k, v in row["Properties"].items() if k != "hal"}
    container = [  # (a reserved logger name's prefix and a replaced time are the VM side's)
        row[c].removeprefix("container:") if c == "LoggerName" else row[c]
        for c in schema.STRING_COLUMNS
        if c not in trusted | {"TimeGenerated"}
    ]
    claimed = row["Properties"]["hal"].get("claimed", {})
    for text in [*container, *_strings(props), *_strings(claimed)]:
        assert text.encode() in fast.raw, text


def _parse(parser: Parser, data: bytes, sizes: list[int]) -> list[Record]:
    framer = Framer("stdout", max_line_bytes=1 << 17)
    out: list[Record] = []
    pos = i = 0
    now = NOW
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.extend(parser.feed_many(framer.feed(data[pos : pos + size], now)))
        pos += size
        i += 1
        now += 0.5
        out.extend(parser.poll(now))
    out.extend(parser.feed_many(framer.finish(now)))
    return out + parser.finish()


def _compare(
    lines: list[bytes],
    sizes: list[int],
    trusted: dict[str, str],
    bounded: bool,
    resend: bool,
    input_format: str = "auto",
) -> list[Record]:
    args: dict[str, Any] = {
        "stream": "stdout",
        "source": "s",
        "trusted": trusted,
        "not_before": STARTED if bounded else None,
        "resend": resend,
        "input_format": input_format,
    }
    fast, careful = Parser(**args), CarefulParser(**args)
    data = b"\n".join(lines) + b"\n"
    got, want = _parse(fast, data, sizes), _parse(careful, data, sizes)
    assert _view(got) == _view(want)
    assert not any("parser error" in str(r.row["Properties"]["hal"]) for r in want)
    starts: dict[int, bytes] = {}
    pos = 0
    for line in lines:
        starts[pos] = line
        pos += len(line) + 1
    for g, w in zip(got, want, strict=True):
        _check_raw(g, w, starts, set(trusted) | {"LogType"})
    counters = ("resent", "not_resent", "dead_letters", "held_start")
    assert [getattr(fast, c) for c in counters] == [getattr(careful, c) for c in counters]
    return got


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_LINES, min_size=1, max_size=30),
    st.lists(st.sampled_from([1, 64, 300, 4096, 1 << 20]), min_size=1, max_size=3),
    st.sampled_from(_TRUSTED),
    st.booleans(),
    st.integers(0, 9),
)
def test_the_lane_gives_the_careful_rows(
    lines: list[bytes], sizes: list[int], trusted: dict[str, str], bounded: bool, odd: int
) -> None:
    _compare(lines, sizes, trusted, bounded, resend=odd == 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(_wire_line(), min_size=1, max_size=30), st.sampled_from(_TRUSTED))
def test_the_lane_gives_the_careful_rows_in_one_chunk(
    lines: list[bytes], trusted: dict[str, str]
) -> None:
    """Whole runs in one call of the lane (its state carried from line to line)."""
    _compare(lines, [1 << 22], trusted, bounded=True, resend=False)


def _configure_line(i: int, **change: Any) -> bytes:
    obj: dict[str, Any] = {schema.WIRE_VERSION_KEY: 1, **schema.empty_row()}
    obj.update(
        TimeGenerated=format_epoch(NOW - 5.0 + i / 1000),
        Level="INFO",
        Message=f"step {i} done",
        LoggerName="agent",
        RunID="bench",
        TaskID=f"task-{i % 3}",
        LogType="AgentLog",
        Properties={"step": i},
    )
    obj.update(change)
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("change", "claimed"),
    [
        ({}, {"RunID": "bench"}),
        ({"RunID": ""}, None),
        (
            {"LoggerName": "hal_logging.azure"},
            {"LoggerName": "hal_logging.azure", "RunID": "bench"},
        ),
        ({"TimeGenerated": "2024-04-01T00:00:00.000000Z"}, "TimeGenerated"),
        ({"Properties": {"hal": {"record_id": "x"}}}, "hal"),
        ({"Message": "\x1b[1mbold\x1b[0m"}, {"RunID": "bench"}),
    ],
    ids=["claims", "blanks", "reserved logger", "out of lifetime", "own hal", "escapes"],
)
def test_lines_that_claim_stay_in_the_lane(change: dict[str, Any], claimed: Any) -> None:
    """The frequent reasons a line used to leave the lane: taken by it now (a
    wire row from the lane is the one with ``raw``, or, with an escape, the one
    the careful parser builds in the same call: same rows either way)."""
    lines = [_configure_line(i, **change) for i in range(40)]
    got = _compare(lines, [1 << 22], {"RunID": "other"}, bounded=True, resend=False)
    assert len(got) == 40
    for rec in got:
        hal = rec.row["Properties"]["hal"]
        assert rec.row["RunID"] == "other"  # the trust rule holds
        if isinstance(claimed, str):
            assert claimed in hal["claimed"]
        else:
            assert hal.get("claimed") == claimed
    if "Message" not in change:
        assert all(rec.raw is not None for rec in got)  # the lane took every line


def test_the_lane_is_really_off_in_the_reference() -> None:
    lines = [_configure_line(i, RunID="other") for i in range(3)]
    careful = CarefulParser(stream="stdout", source="s", trusted={"RunID": "other"})
    fast = Parser(stream="stdout", source="s", trusted={"RunID": "other"})
    data = b"\n".join(lines) + b"\n"
    assert all(r.raw is None for r in _parse(careful, data, [len(data)]))
    assert all(r.raw is not None for r in _parse(fast, data, [len(data)]))


def test_many_contexts_in_one_run() -> None:
    """More contexts than the lane remembers (its memo is cleared and refilled),
    claims and blanks mixed: the careful rows still."""
    lines = [
        _configure_line(i, TaskID=f"task-{i % 150}", RunID=("", "bench", "other")[i % 3])
        for i in range(400)
    ]
    got = _compare(lines, [1 << 22], {"RunID": "other"}, bounded=False, resend=False)
    claims = [r.row["Properties"]["hal"].get("claimed") for r in got]
    assert claims[:3] == [None, {"RunID": "bench"}, None]
    assert all(r.raw is not None for r in got)


@st.composite
def _docker_lines(draw: st.DrawFn) -> list[bytes]:
    """A line as Docker's json-file driver stores it: whole, or in pieces."""
    line = draw(_LINES).decode("utf-8", "replace")
    stream = draw(st.sampled_from(["stdout", "stdout", "stderr", "odd"]))
    when = draw(st.sampled_from(["2024-05-01T11:59:58.123456789Z", "2024-05-01T11:59:59Z", "x"]))
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    pieces = [line + end]
    if draw(st.integers(0, 8)) == 0 and len(line) > 2:  # a 16 KB piece: more follows
        cut = draw(st.integers(1, len(line) - 1))
        pieces = [line[:cut], line[cut:] + end]
    out = []
    for piece in pieces:
        rec = {"log": piece, "stream": stream, "time": when}
        out.append(json.dumps(rec, ensure_ascii=draw(st.booleans())).encode("utf-8", "replace"))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_docker_lines(), min_size=1, max_size=20),
    st.lists(st.sampled_from([1, 300, 4096, 1 << 20]), min_size=1, max_size=3),
    st.sampled_from(_TRUSTED),
    st.booleans(),
    st.sampled_from(["auto", "docker-json"]),
)
def test_the_lane_gives_the_careful_rows_of_docker_json_files(
    records: list[list[bytes]],
    sizes: list[int],
    trusted: dict[str, str],
    bounded: bool,
    input_format: str,
) -> None:
    """Wire lines unwrapped from json-file records take the lane too (no ``raw``)."""
    lines = [piece for rec in records for piece in rec]
    got = _compare(lines, sizes, trusted, bounded, resend=False, input_format=input_format)
    assert all(r.raw is None for r in got if "docker-json+wire" in str(r.row))
