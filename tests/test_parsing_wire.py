"""Wire lines: exact round trip, repairs, trust rule, record ids."""

from __future__ import annotations

from typing import Any

from hal_logging import _json, schema
from hal_logging.pipeline.model import Line
from hal_logging.pipeline.parsing import Parser, record_id

from .forward_helpers import agent_row
from .parsing_helpers import check_row, run


def wire(**overrides: Any) -> bytes:
    row: dict[str, Any] = {
        schema.WIRE_VERSION_KEY: schema.WIRE_VERSION,
        **agent_row(
            "2024-05-01T12:00:00.123456Z",
            "INFO",
            "hello",
            "agent",
            "run-1",
            "task-1",
            Properties={"step": 3, "nested": {"a": [1, 2]}},
        ),
    }
    row.update(overrides)
    return _json.dumps(row)


def test_wire_line_round_trip() -> None:
    data = wire()
    assert data.startswith(schema.WIRE_PREFIX)
    [rec] = run(data + b"\n")
    check_row(rec.row)
    expected = _json.loads(data)
    del expected[schema.WIRE_VERSION_KEY]
    hal = rec.row["Properties"].pop("hal")
    assert rec.row == expected
    assert hal == {
        "stream": "stdout",
        "record_id": record_id("test-source", "stdout", 0),
        "format": "wire",
        "offset": 0,
    }
    assert (rec.start, rec.end, rec.source) == (0, len(data) + 1, "test-source")


def test_trusted_values_win_and_claims_are_kept() -> None:
    data = wire(RunID="someone-elses-run", Benchmark="bench-claimed", AgentName="agent-x") + b"\n"
    [rec] = run(data, trusted={"RunID": "run-9", "TaskID": "task-1", "Benchmark": "swe"})
    row = rec.row
    assert (row["RunID"], row["TaskID"], row["Benchmark"]) == ("run-9", "task-1", "swe")
    assert row["AgentName"] == "agent-x"  # not known by the VM side: the container's value stays
    # task-1 equals the trusted value: not a claim. Empty claims are not recorded either.
    assert row["Properties"]["hal"]["claimed"] == {
        "RunID": "someone-elses-run",
        "Benchmark": "bench-claimed",
    }


def test_log_type_is_trusted_and_container_hal_is_a_claim() -> None:
    data = wire(LogType="VMOperation", Properties={"hal": {"record_id": "forged"}, "k": 1}) + b"\n"
    [rec] = run(data)
    assert rec.row["LogType"] == "AgentLog"
    hal = rec.row["Properties"]["hal"]
    assert hal["claimed"] == {"LogType": "VMOperation", "hal": {"record_id": "forged"}}
    assert hal["record_id"] == record_id("test-source", "stdout", 0)
    assert rec.row["Properties"]["k"] == 1
    [vm] = run(wire(LogType="") + b"\n", trusted={"LogType": "VMOperation"})
    assert vm.row["LogType"] == "VMOperation"


def test_wrong_types_and_values_are_repaired_not_lost() -> None:
    data = (
        wire(
            Level="warn",
            Message={"not": "a string"},
            TaskID=12,
            TimeGenerated="2024-05-01 14:00:00+02:00",
            Properties=[1, 2],
            Extra="kept",
        )
        + b"\n"
        + wire(Level="LOUD", TimeGenerated="yesterday", RunID=None)
        + b"\n"
    )
    first, second = run(data, now=1_714_564_800.5)
    for rec in (first, second):
        check_row(rec.row)
    row = first.row
    assert row["Level"] == "WARNING"
    assert row["Message"] == '{"not":"a string"}'
    assert row["TaskID"] == "12"
    assert row["TimeGenerated"] == "2024-05-01T12:00:00.000000Z"
    assert row["Properties"]["value"] == [1, 2] and row["Properties"]["Extra"] == "kept"
    hal = row["Properties"]["hal"]
    assert hal["original_level"] == "warn"
    assert len(hal["problems"]) == 4
    row = second.row
    assert row["Level"] == "INFO" and row["Properties"]["hal"]["original_level"] == "LOUD"
    assert row["TimeGenerated"] == "2024-05-01T12:00:00.500000Z"  # read time
    assert row["Properties"]["hal"]["original_time"] == "yesterday"
    assert row["RunID"] == ""


def test_missing_columns_are_filled() -> None:
    [rec] = run(b'{"_hal":1,"Message":"only this"}\n')
    check_row(rec.row)
    assert rec.row["Message"] == "only this" and rec.row["Level"] == "INFO"


def test_row_shaped_json_without_marker_is_still_a_row() -> None:
    obj = _json.loads(wire())
    del obj[schema.WIRE_VERSION_KEY]
    [rec] = run(_json.dumps(dict(reversed(list(obj.items())))) + b"\n")
    check_row(rec.row)
    assert rec.row["Message"] == "hello" and rec.row["Properties"]["step"] == 3
    assert rec.row["Properties"]["hal"]["format"] == "wire"


def test_broken_wire_line_becomes_text() -> None:
    [rec] = run(b'{"_hal":1,"Message":"cut here\n')
    check_row(rec.row)
    assert rec.row["Message"] == '{"_hal":1,"Message":"cut here'
    assert rec.row["Properties"]["hal"]["format"] == "text"


def test_invalid_utf8_and_surrogates_in_wire_line() -> None:
    data = wire(Message="placeholder").replace(b"placeholder", b"bad \xff byte \\ud800 x") + b"\n"
    [rec] = run(data)
    check_row(rec.row)
    assert rec.row["Message"].startswith("bad \ufffd byte ")
    assert rec.row["Properties"]["step"] == 3


def test_record_id_is_stable_and_distinct() -> None:
    data = wire() + b"\n" + wire(Message="second") + b"\n"
    a = run(data, chunks=[5])
    b = run(data, chunks=[1000])
    ids = [r.row["Properties"]["hal"]["record_id"] for r in a]
    assert ids == [r.row["Properties"]["hal"]["record_id"] for r in b]
    assert len(set(ids)) == 2
    assert record_id("s", "stdout", 1) != record_id("s", "stderr", 1) != record_id("t", "stdout", 1)
    assert len(record_id("s", "stdout", 1)) == 32


def test_resume_from_checkpoint_gives_same_ids() -> None:
    """A rerun starting at a record's offset gives that record the same id."""
    data = wire() + b"\n" + wire(Message="second") + b"\n"
    full = run(data)
    parser = Parser(stream="stdout", source="test-source", trusted={})
    start = full[1].start
    [again] = parser.feed(Line(data[start:-1], "stdout", start, len(data), 0.0))
    assert again.row == full[1].row


def test_nul_removed_from_message() -> None:
    [rec] = run(wire(Message="a\x00b") + b"\n")
    assert rec.row["Message"] == "ab"
