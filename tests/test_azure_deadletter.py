"""The dead letter: refused rows kept as wire lines with the service's answer, read back by ``--resend``."""

from __future__ import annotations

from pathlib import Path

from hal_logging import _json, schema
from hal_logging.azure.deadletter import DeadLetter, dead_letter_line
from hal_logging.delivery.wirefile import read_lines


def test_refused_rows_keep_their_columns_and_get_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dead.jsonl"  # its folder is made on the first refusal
    dead = DeadLetter(path, "dcr-1", "Custom-S")
    rows = [
        _json.dumps({"Message": "a", "Properties": {"hal": {"record_id": "x"}, "k": 1}}),
        _json.dumps({"Message": "b", "Properties": None}),
    ]
    dead.keep(rows, 400, "InvalidContent", "bad " * 1000, "400 InvalidContent: bad")
    got, _ = read_lines(path, 0)
    assert [g[: len(schema.WIRE_PREFIX)] for g in got] == [schema.WIRE_PREFIX] * 2
    first, second = (_json.loads(g) for g in got)
    answer = first["Properties"]["hal"]["dead_letter"]
    assert answer["status"] == 400 and answer["code"] == "InvalidContent"
    assert len(answer["message"]) == 2000 and answer["rule_id"] == "dcr-1"
    assert answer["stream"] == "Custom-S" and answer["time"].endswith("Z")
    assert first["Properties"]["hal"]["record_id"] == "x" and first["Properties"]["k"] == 1
    assert second["Message"] == "b" and second["Properties"]["hal"]["dead_letter"] == answer


def test_odd_bytes_are_kept_as_a_message() -> None:
    answer = {"status": 400}
    line = dead_letter_line(b"not json", answer)
    assert line.endswith(b"\n")
    assert _json.loads(line) == {
        "_hal": 1,
        "Message": "not json",
        "Properties": {"hal": {"dead_letter": answer}},
    }
    assert _json.loads(dead_letter_line(b"[1,2]", answer))["Message"] == "[1,2]"
    marked = dead_letter_line(b'{"_hal":1,"Message":"m"}', answer)
    assert marked.count(b'"_hal"') == 1
