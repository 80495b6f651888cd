"""Wrap mode's spool: undelivered rows of a command, kept as wire lines that ``--resend`` ships.

Real files and the real CLI (SQLite sink) reading them back.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from hal_logging import _json, schema
from hal_logging.cli.forward import main
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.spool import Spool
from tests.forward_helpers import _STRIP_ENV, db_rows


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _STRIP_ENV:
        monkeypatch.delenv(name, raising=False)


def row(i: int) -> dict[str, object]:
    out = schema.empty_row()
    out.update(
        TimeGenerated="2026-01-02T03:04:05.000000Z",
        RunID="R1",
        TaskID="T1",
        Message=f"line {i}",
        Level="INFO",
        LogType="Agent",
    )
    out["Properties"] = {"hal": {"record_id": f"{i:032x}", "stream": "stdout"}}
    return out


def test_nothing_undelivered_leaves_no_file(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "undelivered.jsonl"))
    spool.close()
    assert spool.rows == 0 and not (tmp_path / "undelivered.jsonl").exists()


def test_prepared_and_plain_rows_are_the_same_lines_and_resend_keeps_their_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "undelivered.jsonl"
    spool = Spool(str(path))
    # A sink that prepared its rows replaced them by their JSON (orjson.Fragment).
    spool.write([Record(row(0), "stdout", 0, 10)])
    spool.write([Record(orjson.Fragment(_json.dumps(row(1))), "stdout", 10, 20)])  # type: ignore[arg-type]
    spool.close()
    assert spool.rows == 2
    lines = path.read_bytes().splitlines()
    assert lines == [schema.WIRE_PREFIX + _json.dumps(row(i))[1:] for i in (0, 1)]

    db = tmp_path / "ws.db"
    assert main([str(a) for a in ("--resend", path, "--sink", "sqlite", "--db", db)] + ["-q"]) == 0
    stored = sorted(db_rows(db), key=lambda r: r["_record_id"])
    assert [r["_record_id"] for r in stored] == [f"{i:032x}" for i in (0, 1)]
    assert [r["Message"] for r in stored] == ["line 0", "line 1"]
