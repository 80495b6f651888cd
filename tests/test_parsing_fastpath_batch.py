"""The batched fast paths give exactly what line-by-line processing gives.

:meth:`Parser.feed_many` takes runs of wire lines in one loop (record ids
formatted per chunk, the trust and time checks remembered from line to line,
the read-time walk skipped when no row can need it); :meth:`Framer.feed` splits
a run of plain lines at once. Neither may change a row, a span or
``Record.raw``: the reference here is :meth:`Parser.feed` per line followed by
the read-time walk over the chunk (what ``feed_many`` is defined as), and a
framer fed one byte at a time.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing import Parser
from hal_logging.pipeline.parsing.fastpath import _clamp_read_times
from hal_logging.pipeline.parsing.timestamps import format_epoch

TRUSTED = {"RunID": "run-1", "VMName": "vm-a"}
NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def _wire(obj: dict[str, Any]) -> bytes:
    return _json.dumps(obj)


def _base(i: int = 0) -> dict[str, Any]:
    obj: dict[str, Any] = {schema.WIRE_VERSION_KEY: 1, **schema.empty_row()}
    obj.update(
        TimeGenerated=f"2024-05-01T11:59:{i % 3:02d}.{i:06d}Z",
        Level="INFO",
        Message=f"step {i} done",
        LoggerName="agent",
        LogType="AgentLog",
        Properties={"step": i},
    )
    return obj


_CHANGES: list[dict[str, Any]] = [
    {},
    {},
    {},
    {"RunID": "run-1"},
    {"RunID": "run-1", "VMName": "vm-a"},
    {"RunID": "claimed"},
    {"VMName": "vm-b", "RunID": ""},
    {"TaskID": "task-7"},
    {"TaskID": 7},
    {"TaskID": []},
    {"RunID": []},
    {"LogType": "VMOperation"},
    {"Level": "ERROR"},
    {"Level": "WARNING"},
    {"Level": "warn"},
    {"Level": []},
    {"Message": 'tab\there, quote " and é'},
    {"Message": "a\x00b"},
    {"Message": "\x1b[1mB\x1b[0m"},
    {"Message": "c\x9b1md"},
    {"Message": ["x"]},
    {"Message": {"x": 1}},
    {"TimeGenerated": "2024-05-01T12:00:00.000000Z"},  # the read time of the first chunk
    {"TimeGenerated": "2024-05-01T11:58:59.999999Z"},
    {"TimeGenerated": "2024-05-01T11:59:01.12345xZ"},
    {"TimeGenerated": "2024-05-01T11:59:01.\uff11\uff12\uff13\uff14\uff15\uff16Z"},
    {"TimeGenerated": "2024-02-30T12:00:00.123456Z"},
    {"TimeGenerated": ["2024"]},
    {"TimeGenerated": 5},
    {"Properties": {"hal": {"record_id": "forged"}}},
    {"Properties": [1]},
    {"Properties": "x"},
    {schema.WIRE_VERSION_KEY: 2},
    {schema.WIRE_VERSION_KEY: True},
    {"Extra": 1},
]

_OTHER_LINES: list[bytes] = [
    b"",
    b"   \x1b[K",
    b"print one",
    b"ERROR:agent.tools:boom",
    b"Traceback (most recent call last):",
    b'  File "/app/agent.py", line 10, in <module>',
    b"ValueError: bad tool output",
    b"2024-05-01 11:59:59,123 - agent - INFO - stamped",
    b'{"event": "llm call", "level": "info"}',
    b'{"log":"docker line\\n","stream":"stdout","time":"2024-05-01T11:59:59.1Z"}',
    b'{"_hal":1,not json',
    b'{"_hal":1,"TimeGenerated":"2024-05-01T11:59:00.000000Z","_hal":2}',
    b"\xff\xfe invalid utf-8",
]


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind < 7:  # mostly wire lines, as configure() writes them or changed a little
        obj = _base(draw(st.integers(0, 50)))
        for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
            obj.update(draw(st.sampled_from(_CHANGES)))
        if draw(st.integers(0, 20)) == 0:  # the same keys in another order
            obj = dict(draw(st.permutations(list(obj.items()))))
        if draw(st.integers(0, 40)) == 0:  # too long for the fast path
            obj["Properties"] = {"blob": "x" * 25_000}
        return _wire(obj)
    return draw(st.sampled_from(_OTHER_LINES))


def _reference(parser: Parser, lines: list[Line]) -> list[Record]:
    """``feed_many`` as defined: ``feed`` per line, then the read-time walk."""
    out: list[Record] = []
    for line in lines:
        out.extend(parser.feed(line))
    if lines and len(out) > 1:
        _clamp_read_times(out, parser._received(lines[-1].received))
    return out


def _view(records: list[Record]) -> list[tuple[Any, ...]]:
    """Everything about a record, row key order included."""
    return [
        (orjson.dumps(r.row), repr(r.row), r.stream, r.start, r.end, r.source, r.size, r.raw)
        for r in records
    ]


def _parse_both(
    data: bytes, sizes: list[int], **parser_args: Any
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    args: dict[str, Any] = {"stream": "stdout", "source": "s", "trusted": TRUSTED, **parser_args}
    framer = Framer("stdout", max_line_bytes=1 << 16)
    batched, single = Parser(**args), Parser(**args)
    got: list[Record] = []
    want: list[Record] = []
    pos = i = 0
    now = NOW
    while pos < len(data):
        lines = framer.feed(data[pos : pos + sizes[i % len(sizes)]], now)
        got.extend(batched.feed_many(lines))
        want.extend(_reference(single, lines))
        assert batched.held_start == single.held_start
        pos += sizes[i % len(sizes)]
        i += 1
        now += 0.5
        got.extend(batched.poll(now))
        want.extend(single.poll(now))
    last = framer.finish(now)
    got.extend(batched.feed_many(last) + batched.finish())
    want.extend(_reference(single, last) + single.finish())
    return _view(got), _view(want)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_lines(), min_size=1, max_size=40),
    st.lists(st.sampled_from([1, 7, 64, 300, 4096, 1 << 20]), min_size=1, max_size=4),
    st.sampled_from(["auto", "raw", "docker-json"]),
    st.booleans(),
)
def test_feed_many_is_feed_line_by_line(
    lines: list[bytes], sizes: list[int], input_format: str, resend: bool
) -> None:
    got, want = _parse_both(
        b"\n".join(lines) + b"\n", sizes, input_format=input_format, resend=resend
    )
    assert got == want


def test_a_wire_row_at_the_read_time_is_still_bounded() -> None:
    """The walk is skipped for chunks of wire rows, unless one has the read time."""
    at_read_time = {**_base(1), "TimeGenerated": format_epoch(NOW)}
    data = _wire(at_read_time) + b"\n" + _wire(_base(2)) + b"\n"
    got, want = _parse_both(data, [len(data)])
    assert got == want
    rows = [orjson.loads(g[0]) for g in got]
    assert rows[0]["TimeGenerated"] == rows[1]["TimeGenerated"] == _base(2)["TimeGenerated"]


def test_rows_do_not_depend_on_orjson_key_cache() -> None:
    """The fast path looks keys up with orjson's cached key objects; if the cache
    drops them (many other keys), lookups still find them by equality."""
    data = b"".join(_wire({**_base(i), "TaskID": f"t{i % 3}"}) + b"\n" for i in range(20))
    before, want = _parse_both(data, [len(data)])
    orjson.loads(orjson.dumps({f"key-{i}": i for i in range(20_000)}))  # evicts cached keys
    after, _ = _parse_both(data, [len(data)])
    assert before == want == after
    assert all(view[7] is not None for view in after)  # all took the fast path


# -- framing ----------------------------------------------------------------------------


def _frame(data: bytes, sizes: list[int], cap: int, json_cap: int) -> list[tuple[Any, ...]]:
    framer = Framer("stdout", start_offset=3, max_line_bytes=cap, max_json_bytes=json_cap)
    out: list[Line] = []
    pos = i = 0
    while pos < len(data):
        out.extend(framer.feed(data[pos : pos + sizes[i % len(sizes)]], 1.0))
        pos += sizes[i % len(sizes)]
        i += 1
    out.extend(framer.finish(2.0))
    return [(ln.data, ln.stream, ln.start, ln.end, ln.received, ln.length) for ln in out]


_PIECES = st.sampled_from(
    [b"a", b"bc", b"{", b"{x", b"\n", b"\n", b"\n", b"\r", b"\r\n", b" ", b"\x1b[K", b"x" * 40]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_PIECES, max_size=60),
    st.lists(st.integers(1, 200), min_size=1, max_size=5),
    st.sampled_from([4, 16, 64, 1 << 17]),
    st.sampled_from([0, 32, 1 << 20]),
)
def test_framer_in_chunks_is_framer_byte_by_byte(
    pieces: list[bytes], sizes: list[int], cap: int, json_cap: int
) -> None:
    data = b"".join(pieces)
    assert _frame(data, sizes, cap, json_cap) == _frame(data, [1], cap, json_cap)
    assert _frame(data, [len(data) or 1], cap, json_cap) == _frame(data, [1], cap, json_cap)
