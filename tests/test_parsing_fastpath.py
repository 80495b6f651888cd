"""The wire fast path gives the row the careful path gives, or steps aside.

:meth:`Parser._wire_fast` takes the lines ``configure()`` writes without the
general machinery; anything it is not sure about must go to the careful path
(:meth:`Parser._wire`), never to the parser-error fallback, and for what it
accepts the two must agree exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.pipeline.model import Line
from hal_logging.pipeline.parsing import Parser
from tests.forward_helpers import agent_row

TRUSTED = {"RunID": "run-1", "VMName": "vm-a"}

_texts = st.sampled_from(
    ["", "run-1", "vm-a", "other", "x" * 30, "é", "\x1b[1mB\x1b[0m", "a\x00b", "c\x9b1md"]
)
_times = st.sampled_from(
    [
        "2024-05-01T12:00:00.123456Z",
        "2024-05-01T12:00:00.123456",
        "2024-02-30T12:00:00.123456Z",
        "2024-05-01 12:00:00.123456Z",
        "2024-05-01T12:00:00.12345ZZ",
        "2024-05-01T12:00:01.123456Z",
        "2024-05-01T12:00:01.12345xZ",
        "2024-05-01T12:00:01.\uff11\uff12\uff13\uff14\uff15\uff16Z",
        "",
    ]
)
_values = st.one_of(st.none(), st.integers(-5, 5), _texts, st.lists(st.integers(), max_size=2))
_odd = {
    "TimeGenerated": st.one_of(_times, _values),
    "Level": st.sampled_from(["ERROR", "warn", "", "Info", 20]),
    "Properties": st.one_of(
        st.dictionaries(st.sampled_from(["a", "b", "hal", "tokens"]), _values, max_size=3),
        _values,
    ),
}


@st.composite
def _objects(draw: st.DrawFn) -> dict[str, Any]:
    """A line as configure() writes it, with a few things changed (or none)."""
    obj = _base()
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        change = draw(st.integers(0, 6))
        if change == 0:
            obj[schema.WIRE_VERSION_KEY] = draw(st.sampled_from([2, True, "1", 1.0]))
        elif change == 1:
            obj.pop(draw(st.sampled_from(schema.COLUMN_NAMES)), None)
        elif change == 2:
            obj[draw(st.sampled_from(["Extra", "Stranger"]))] = 1
        elif change == 3:
            col = draw(st.sampled_from(list(_odd)))
            obj[col] = draw(_odd[col])
        elif change == 4:
            col = draw(st.sampled_from(schema.STRING_COLUMNS))
            obj[col] = draw(_texts)
        elif change == 5:
            col = draw(st.sampled_from(schema.STRING_COLUMNS))
            obj[col] = draw(_values)
        else:  # the same keys in another order
            items = list(obj.items())
            obj = dict(draw(st.permutations(items)))
    return obj


def _line(obj: dict[str, Any], start: int = 100) -> Line:
    data = _json.dumps(obj)
    return Line(data, "stdout", start, start + len(data) + 1, 1714564800.0)


@settings(max_examples=400, deadline=None)
@given(_objects(), st.lists(_objects(), max_size=3))
def test_fast_path_agrees_with_the_careful_path(
    obj: dict[str, Any], before: list[dict[str, Any]]
) -> None:
    fast_parser = Parser(stream="stdout", source="s", trusted=TRUSTED)
    careful = Parser(stream="stdout", source="s", trusted=TRUSTED)
    for i, b in enumerate(before):  # earlier lines set the fast path's caches
        fast_parser.feed(_line(b, i))
    line = _line(obj)
    [got] = fast_parser.feed(line)
    assert "parser error" not in str(got.row["Properties"]["hal"].get("problems"))
    if not line.data.startswith(schema.WIRE_PREFIX):
        return  # not a wire line (the marker is not first): the fast path is not asked
    accepted = fast_parser._wire_fast(line.data, line.start, line.end)
    want = careful._wire(line.data, line, len(line.data))
    assert want is not None  # a JSON object with the wire marker is a wire row
    assert got.row == want.row
    assert (got.start, got.end, got.stream, got.source) == (want.start, want.end, "stdout", "s")
    if accepted is not None:  # what the fast path accepts, it builds like the careful one
        assert accepted.row == want.row


def _base() -> dict[str, Any]:
    return {
        schema.WIRE_VERSION_KEY: 1,
        **agent_row(
            "2024-05-01T12:00:00.123456Z",
            "INFO",
            "step done",
            "agent",
            "",
            "",
            Properties={"step": 1},
        ),
    }


_ONE_CHANGE: list[dict[str, Any]] = [
    {},
    *({"Level": v} for v in ["warn", "Info", "", 20, None]),
    *({"Message": v} for v in ["a\x00b", "\x1b[1mB\x1b[0m", "c\x9b1md", 5, "é ok"]),
    *({"TimeGenerated": v} for v in [*_times.elements, 5, None]),  # type: ignore[attr-defined]
    *({schema.WIRE_VERSION_KEY: v} for v in [2, "1", 1.0]),
    *({"Properties": v} for v in [{"hal": {"record_id": "forged"}}, [1], "x", None, {}]),
    *({"RunID": v} for v in ["run-1", "claimed", 7]),
    {"VMName": "vm-b", "RunID": ""},
    {"LogType": "VMOperation"},
    {"Extra": 1},
]


@pytest.mark.parametrize("change", _ONE_CHANGE, ids=repr)
def test_one_change_from_a_configure_line(change: dict[str, Any]) -> None:
    """Each check of the fast path, alone: same row as the careful path."""
    obj = {**_base(), **change}
    line = _line(obj)
    fast = Parser(stream="stdout", source="s", trusted=TRUSTED)
    fast.feed(_line(_base(), 0))  # warm the caches (time, claims)
    [got] = fast.feed(line)
    assert "parser error" not in str(got.row["Properties"]["hal"].get("problems"))
    if not line.data.startswith(schema.WIRE_PREFIX):
        return  # another marker: not a wire line, the fast path is not asked
    want = Parser(stream="stdout", source="s", trusted=TRUSTED)._wire(
        line.data, line, len(line.data)
    )
    assert want is not None and got.row == want.row


def test_odd_shapes_never_reach_the_error_fallback() -> None:
    parser = Parser(stream="stdout", source="s", trusted=TRUSTED)
    good = {schema.WIRE_VERSION_KEY: 1, **schema.empty_row()}
    good.update(TimeGenerated="2024-05-01T12:00:00.000000Z", Level="INFO", Message="m")
    odd = [
        {**good, "TimeGenerated": 5},
        {**{k: v for k, v in good.items() if k != "TimeGenerated"}, "Foo": "bar"},
        {**good, "Properties": {"hal": {"record_id": "forged"}}},
        {**good, "RunID": "claimed-run"},
    ]
    for obj in odd:
        [rec] = parser.feed(_line(obj))
        hal = rec.row["Properties"]["hal"]
        assert hal["format"] == "wire"
        assert "parser error" not in str(hal.get("problems"))
        assert rec.row["RunID"] == "run-1" and rec.row["VMName"] == "vm-a"
        assert hal["record_id"] != "forged"
