"""What decoding changed is noted: dropped NUL and replaced invalid UTF-8 leave
a note in ``Properties.hal.problems`` (through the real CLI, into the workspace)."""

from __future__ import annotations

from pathlib import Path

from hal_logging import _json, schema
from tests.forward_helpers import db_rows, run_forward


def _wire(message_json: bytes) -> bytes:
    row = schema.empty_row()
    row.update(TimeGenerated="2024-05-01T00:00:00.000001Z", Level="INFO", LoggerName="agent")
    body = _json.dumps(row)[1:]
    return schema.WIRE_PREFIX + body.replace(b'"Message":""', b'"Message":"' + message_json + b'"')


def test_nul_and_invalid_utf8_leave_a_note(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(
        b"\n".join(
            [
                b"text with a nul\x00 inside",
                b"text caf\xe9 latte",
                b"text with a real \xef\xbf\xbd replacement character",
                b"plain text",
                _wire(b"wire with a nul \\u0000 escaped"),
                _wire(b"wire caf\xe9 bytes"),
            ]
        )
        + b"\n"
    )
    db = tmp_path / "ws.db"
    res = run_forward(["--db", str(db), str(log)], tmp_path)
    assert res.returncode == 0, res.stderr
    problems = {r["Message"]: r["Properties"]["hal"].get("problems", []) for r in db_rows(db)}
    assert problems["text with a nul inside"] == ["NUL characters removed"]
    assert problems["text caf\ufffd latte"] == ["invalid UTF-8 replaced with U+FFFD"]
    assert problems["text with a real \ufffd replacement character"] == []
    assert problems["plain text"] == []
    assert problems["wire with a nul  escaped"] == ["NUL characters removed from Message"]
    assert problems["wire caf\ufffd bytes"] == ["invalid UTF-8 replaced with U+FFFD"]
