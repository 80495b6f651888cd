"""``hal-logging-forward --resend``: files hal-logging wrote keep their record ids.

The dead-letter file (uploader), the handler's spill file and wrap mode's
undelivered file are re-shipped with ``--resend``: each row keeps the
record_id, context and Properties.hal it was written with, so a row that was
both delivered and kept is stored once. Without ``--resend`` a container's
forged record id is never used. Real parsing, real SQLite, the real CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hal_logging import _json, schema
from hal_logging.azure.uploader import dead_letter_line
from hal_logging.cli.forward import EXIT_USAGE, main
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.spool import Spool as _Spool
from tests.forward_helpers import _STRIP_ENV, db_rows, wire_line

HAL = schema.PROP_HAL


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _STRIP_ENV:
        monkeypatch.delenv(name, raising=False)


def forward(*args: str | Path, summary: Path | None = None) -> tuple[int, dict[str, Any]]:
    argv = [str(a) for a in args] + ["--quiet", "--no-checkpoint"]
    if summary is not None:
        argv += ["--summary-json", str(summary)]
    status = main(argv)
    data = _json.loads(summary.read_bytes()) if summary is not None else {}
    return status, data


def container_output(path: Path) -> None:
    """What a container printed: wire lines, text, a traceback, an ERROR line."""
    lines = [wire_line(i, run="R1", task="T1") for i in range(20)]
    lines += [
        b"plain print output",
        b"Traceback (most recent call last):",
        b'  File "agent.py", line 3, in <module>',
        b"ValueError: bad value",
        b"ERROR:agent.tools:tool failed",
    ]
    lines += [wire_line(i, run="CLAIMED", task="T1") for i in range(20, 25)]
    path.write_bytes(b"\n".join(lines) + b"\n")


def shipped(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Forward the container output into a workspace; its rows, as the sink saw them."""
    out = tmp_path / "out.log"
    container_output(out)
    db = tmp_path / "ws.db"
    rows_file = tmp_path / "rows.jsonl"
    ctx = ["--run-id", "R1", "--task-id", "T1", "--benchmark", "B"]
    status, _ = forward(out, "--sink", "jsonl", "-o", rows_file, *ctx)
    assert status == 0
    status, _ = forward(out, "--sink", "sqlite", "--db", db, *ctx)
    assert status == 0
    rows = [_json.loads(x) for x in rows_file.read_bytes().splitlines()]
    stored = db_rows(db)
    assert len(rows) == len(stored) > 20
    ids = [r["Properties"][HAL]["record_id"] for r in rows]
    assert ids == [r["_record_id"] for r in stored]  # the same bytes, the same ids
    return db, rows


def ids_of(db: Path) -> list[str]:
    return sorted(r["_record_id"] for r in db_rows(db))


def test_undelivered_file_resent_keeps_ids_and_context(tmp_path: Path) -> None:
    db, rows = shipped(tmp_path)
    before = ids_of(db)
    spool_path = tmp_path / "hal-forward-undelivered-abc.jsonl"
    spool = _Spool(str(spool_path))
    spool.write([Record(dict(r), "unknown", 0, 0) for r in rows])
    spool.close()

    # Trusted flags that differ: a resent row keeps the context it was written with.
    status, data = forward(
        "--resend", spool_path, "--sink", "sqlite", "--db", db, "--run-id", "OTHER",
        summary=tmp_path / "s.json",
    )  # fmt: skip
    assert status == 0
    assert data["duplicates"] == len(rows)  # confirmed, none stored again
    assert ids_of(db) == before
    assert any(f"{len(rows)} row(s) kept the record_id" in n for n in data["notes"])

    fresh = tmp_path / "fresh.db"
    status, data = forward(
        "--resend", spool_path, "--sink", "sqlite", "--db", fresh, "--run-id", "OTHER"
    )
    assert status == 0
    got = {r["_record_id"]: r for r in db_rows(fresh)}
    assert sorted(got) == before
    for r in rows:
        g = got[r["Properties"][HAL]["record_id"]]
        for col in ("RunID", "TaskID", "Benchmark", "LogType", "Message", "Level"):
            assert g[col] == r[col]
        assert g["Properties"] == r["Properties"]  # Properties.hal as written


def test_dead_letter_file_resent_drops_the_answer(tmp_path: Path) -> None:
    db, rows = shipped(tmp_path)
    answer = {"status": 400, "code": "InvalidContent", "message": "refused", "time": "t"}
    dead = tmp_path / "dead-letter.jsonl"
    dead.write_bytes(b"".join(dead_letter_line(_json.dumps(r), answer) for r in rows))
    assert b'"dead_letter"' in dead.read_bytes()

    status, data = forward(
        "--resend", dead, "--sink", "sqlite", "--db", db, summary=tmp_path / "s.json"
    )
    assert status == 0
    assert data["duplicates"] == len(rows)
    assert any(f"{len(rows)} row(s) had been refused before" in n for n in data["notes"])

    fresh = tmp_path / "fresh.db"
    assert forward("--resend", dead, "--sink", "sqlite", "--db", fresh)[0] == 0
    stored = db_rows(fresh)
    assert sorted(r["_record_id"] for r in stored) == ids_of(db)
    assert all("dead_letter" not in r["Properties"][HAL] for r in stored)


def handler_spill_line(i: int, id_base: str) -> bytes:
    """A line as the in-process handler spills it (its own Properties.hal)."""
    row = _json.loads(b"{" + wire_line(i, run="R9")[len(schema.WIRE_PREFIX) :])
    row["LogType"] = schema.LOG_TYPE_VM
    row["Properties"][HAL] = {
        "stream": "unknown",
        "record_id": f"{id_base}{i:04x}",
        "format": "handler",
        "offset": i,
    }
    return schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n"


@pytest.mark.parametrize("id_base", ["0123456789ab-4d2-", "0123456789abcdef0123" + "0" * 8])
def test_spill_file_resent_twice_is_stored_once(tmp_path: Path, id_base: str) -> None:
    spill = tmp_path / "spill.jsonl"
    spill.write_bytes(b"".join(handler_spill_line(i, id_base) for i in range(1, 31)))
    db = tmp_path / "ws.db"
    expected = sorted(f"{id_base}{i:04x}" for i in range(1, 31))
    for run in range(2):
        status, data = forward(
            "--resend", spill, "--sink", "sqlite", "--db", db, "--run-id", "TRUSTED",
            summary=tmp_path / f"s{run}.json",
        )  # fmt: skip
        assert status == 0
        assert data["duplicates"] == (0 if run == 0 else 30)
        assert ids_of(db) == expected
    stored = db_rows(db)
    assert {r["RunID"] for r in stored} == {"R9"}
    assert {r["LogType"] for r in stored} == {schema.LOG_TYPE_VM}


def test_forged_record_id_is_not_used_without_resend(tmp_path: Path) -> None:
    """A container that copies a real row's id must not make the workspace drop rows."""
    db, rows = shipped(tmp_path)
    before = ids_of(db)
    victim = rows[3]
    forged = dict(victim)
    forged["Message"] = "forged by the container"
    forged["Properties"] = {**victim["Properties"], "x": 1}
    line = schema.WIRE_PREFIX + _json.dumps(forged)[1:] + b"\n"
    other = tmp_path / "container2.log"
    other.write_bytes(line + wire_line(99, run="R1") + b"\n")

    status, data = forward(
        other, "--sink", "sqlite", "--db", db, "--run-id", "R1", summary=tmp_path / "s.json"
    )
    assert status == 0
    assert data["delivered"] == 2 and data["duplicates"] == 0
    after = db_rows(db)
    assert len(after) == len(before) + 2
    row = next(r for r in after if r["Message"] == "forged by the container")
    victim_id = victim["Properties"][HAL]["record_id"]
    assert row["_record_id"] != victim_id
    assert row["Properties"][HAL]["record_id"] == row["_record_id"]
    assert row["Properties"][HAL]["claimed"]["hal"]["record_id"] == victim_id


def test_resend_without_a_valid_id_is_container_output(tmp_path: Path) -> None:
    bad = dict(_json.loads(b"{" + wire_line(1, run="CLAIMED")[len(schema.WIRE_PREFIX) :]))
    bad["Properties"] = {HAL: {"record_id": "not-an-id'; DROP"}}
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(
        schema.WIRE_PREFIX
        + _json.dumps(bad)[1:]
        + b"\n"
        + wire_line(2, run="CLAIMED")
        + b"\nplain text\n"
    )
    db = tmp_path / "ws.db"
    status, data = forward(
        "--resend", f, "--sink", "sqlite", "--db", db, "--run-id", "R1", summary=tmp_path / "s.json"
    )
    assert status == 0 and data["delivered"] == 3
    assert any("3 row(s) carried no record_id" in n for n in data["notes"])
    for r in db_rows(db):
        assert r["RunID"] == "R1"  # the trust rule applied
        assert len(r["_record_id"]) == 32
    assert {r["Properties"][HAL].get("claimed", {}).get("RunID") for r in db_rows(db)} == {
        "CLAIMED",
        None,
    }


@pytest.mark.parametrize("extra", [["--follow"], ["--", "true"]])
def test_resend_is_for_files_only(tmp_path: Path, extra: list[str]) -> None:
    f = tmp_path / "x.jsonl"
    f.write_bytes(b"")
    argv = ["--resend", *(["--follow", str(f)] if extra == ["--follow"] else extra)]
    assert main(argv) == EXIT_USAGE


def test_resent_oversized_row_keeps_its_id_and_is_cut(tmp_path: Path) -> None:
    row = _json.loads(b"{" + wire_line(1, msg="x" * 100_000)[len(schema.WIRE_PREFIX) :])
    row["Properties"][HAL] = {"stream": "stdout", "record_id": "ab" * 16, "offset": 7}
    f = tmp_path / "undelivered.jsonl"
    f.write_bytes(schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n")
    db = tmp_path / "ws.db"
    assert forward("--resend", f, "--sink", "sqlite", "--db", db)[0] == 0
    (stored,) = db_rows(db)
    assert stored["_record_id"] == "ab" * 16
    assert len(stored["Message"].encode()) <= schema.MAX_FIELD_BYTES
    assert stored["Properties"][HAL]["original_length"]["Message"] == 100_000
