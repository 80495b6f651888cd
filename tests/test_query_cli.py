"""``hal-logging query``: filters, JSON lines, read-only SQL, --follow; ``hal-logging`` dispatch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hal_logging import schema
from hal_logging.cli.query import parse_since
from hal_logging.pipeline.sinks.sqlite import Workspace

from .forward_helpers import agent_row, clean_env, run_cli, start_cli


def _row(
    i: int,
    *,
    level: str = "INFO",
    logger: str = "agent",
    run: str = "R1",
    task: str = "T1",
    msg: str = "",
    t: str = "2024-05-01T00:00:00",
) -> dict:
    row = agent_row(f"{t}.{i:06d}Z", level, msg or f"message {i}", logger, run, task)
    row["Properties"] = {"i": i, "hal": {"record_id": f"rid-{run}-{i}"}}
    return row


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "w.db"
    ws = Workspace(str(path))
    ws.insert_rows(
        [
            _row(1, level="DEBUG"),
            _row(2, msg="Traceback in tool"),
            _row(3, level="WARNING", logger="agent.tools"),
            _row(4, level="ERROR", logger="httpx", msg="multi\nline"),
            _row(5, run="R2", task="T9", level="CRITICAL"),
            _row(6, logger="agentx"),
        ]
    )
    ws.close()
    return path


def _query(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("query", *args, cwd=cwd)


def _json_rows(res: subprocess.CompletedProcess[str]) -> list[dict]:
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_filters_and_json_output(db: Path) -> None:
    rows = _json_rows(_query("--db", str(db), "--json"))
    assert [r["Properties"]["i"] for r in rows] == [1, 2, 3, 4, 5, 6]  # oldest first
    assert isinstance(rows[0]["Properties"], dict)
    assert [
        r["Properties"]["i"]
        for r in _json_rows(_query("--db", str(db), "--json", "--level", "warning"))
    ] == [3, 4, 5]
    assert [
        r["Properties"]["i"]
        for r in _json_rows(_query("--db", str(db), "--json", "--run-id", "R2"))
    ] == [5]
    assert [
        r["Properties"]["i"]
        for r in _json_rows(
            _query("--db", str(db), "--json", "--task-id", "T1", "--logger", "agent")
        )
    ] == [1, 2, 3]
    assert [
        r["Properties"]["i"]
        for r in _json_rows(_query("--db", str(db), "--json", "--contains", "traceback"))
    ] == [2]
    assert [
        r["Properties"]["i"] for r in _json_rows(_query("--db", str(db), "--json", "--limit", "2"))
    ] == [5, 6]
    assert _json_rows(_query("--db", str(db), "--json", "--since", "2030-01-01T00:00:00Z")) == []


def test_table_output_is_one_line_per_row(db: Path) -> None:
    res = _query("--db", str(db))
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert len(lines) == 6 and "multi\\nline" in lines[3]


def test_sql_is_read_only(db: Path) -> None:
    res = _query(
        "--db",
        str(db),
        "--sql",
        "SELECT Level, count(*) AS n FROM BenchmarkRuns_CL GROUP BY Level ORDER BY Level",
        "--json",
    )
    assert {r["Level"]: r["n"] for r in _json_rows(res)} == {
        "CRITICAL": 1,
        "DEBUG": 1,
        "ERROR": 1,
        "INFO": 2,
        "WARNING": 1,
    }
    bad = _query("--db", str(db), "--sql", "DELETE FROM BenchmarkRuns_CL")
    assert bad.returncode == 2 and "read-only" in bad.stderr and "Traceback" not in bad.stderr
    assert len(_json_rows(_query("--db", str(db), "--json"))) == 6


def test_missing_workspace_and_bad_since_are_clear(tmp_path: Path) -> None:
    res = _query("--db", str(tmp_path / "none.db"))
    assert res.returncode == 1 and "no workspace" in res.stderr
    assert not (tmp_path / "none.db").exists()
    res = _query("--db", str(tmp_path / "none.db"), "--since", "yesterday")
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr


def test_follow_prints_new_rows(db: Path) -> None:
    proc = start_cli(
        "query",
        "--db",
        str(db),
        "--json",
        "--follow",
        "--level",
        "ERROR",
    )
    try:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline()) for _ in range(2)]  # the existing ERROR+ rows
        assert [r["Properties"]["i"] for r in first] == [4, 5]
        ws = Workspace(str(db))
        ws.insert_rows([_row(7, level="INFO"), _row(8, level="ERROR", msg="new error")])
        ws.close()
        new = json.loads(proc.stdout.readline())
        assert new["Message"] == "new error"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_since_accepts_ages_and_iso() -> None:
    from datetime import datetime, timezone

    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_since("10m", now) == "2024-05-01T11:50:00.000000Z"
    assert parse_since("2024-05-01T10:00:00Z") == "2024-05-01T10:00:00.000000Z"


def test_main_dispatch_and_unknown_command() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        res.returncode == 0
        and "query" in res.stdout
        and "emulator" in res.stdout
        and "schema" in res.stdout
        and "azure-setup" in res.stdout
    )
    res = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "unknown command" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "schema", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0


def test_query_reads_what_the_forwarder_wrote(tmp_path: Path) -> None:
    from .forward_helpers import run_forward, wire_line

    (tmp_path / "in.log").write_bytes(
        b"\n".join(wire_line(i, level="ERROR" if i == 3 else "INFO") for i in range(5)) + b"\n"
    )
    assert run_forward(["--task-id", "T-q", "in.log"], tmp_path).returncode == 0
    rows = _json_rows(_query("--level", "ERROR", "--task-id", "T-q", "--json", cwd=tmp_path))
    assert [r["Message"] for r in rows] == ["step 3 done"]


# -- operators' mistakes: one line, what to do, no traceback -------------------------------


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr and "usage:" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_db_that_is_a_directory_says_so(tmp_path: Path) -> None:
    res = _query("--db", str(tmp_path))
    assert res.returncode == 1
    line = _one_line_error(res)
    assert "is a directory" in line and "hal-logs.db" in line and "disk I/O" not in line
    assert _query("--db", str(tmp_path), "--follow").returncode == 1  # never waits on a folder


def test_db_that_is_not_a_workspace_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not sqlite at all\n" * 100)
    res = _query("--db", str(tmp_path / "notes.txt"))
    assert res.returncode == 1
    assert "not a readable hal-logging workspace" in _one_line_error(res)


def test_missing_workspace_is_one_line(tmp_path: Path) -> None:
    res = _query("--db", str(tmp_path / "none.db"))
    assert res.returncode == 1
    line = _one_line_error(res)
    assert f"no workspace at {tmp_path / 'none.db'}" in line and "hal-logging-forward" in line


def test_bad_level_names_the_levels_in_one_line(db: Path) -> None:
    res = _query("--db", str(db), "--level", "LOUD")
    assert res.returncode == 2
    line = _one_line_error(res)
    assert "'LOUD'" in line and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in line
    assert [
        r["Properties"]["i"]
        for r in _json_rows(_query("--db", str(db), "--json", "--level", "error"))
    ] == [4, 5]
    # Said before waiting for a workspace, too.
    res = _query("--db", str(db.parent / "later.db"), "--follow", "--level", "LOUD")
    assert res.returncode == 2 and "DEBUG, INFO" in _one_line_error(res)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--bogus",), "--bogus"),
        (("--limit", "many"), "--limit"),
        (("--since", "yesterday"), "--since"),
    ],
)
def test_usage_mistakes_are_one_line(db: Path, args: tuple[str, ...], needle: str) -> None:
    res = _query("--db", str(db), *args)
    assert res.returncode == 2
    assert needle in _one_line_error(res)


def test_follow_waits_for_the_workspace_to_appear(tmp_path: Path) -> None:
    """A query started before the forwarder: it waits, then prints what arrives."""
    target = tmp_path / "later.db"
    proc = start_cli(
        "query",
        "--db",
        str(target),
        "--json",
        "--follow",
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        note = proc.stderr.readline()
        assert "waiting" in note and str(target) in note
        assert proc.poll() is None, "query --follow exited instead of waiting"
        ws = Workspace(str(target))
        ws.insert_rows([_row(1, msg="first row")])
        ws.close()
        assert json.loads(proc.stdout.readline())["Message"] == "first row"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# -- --dedupe -------------------------------------------------------------------------------


def _emulator_db(tmp_path: Path, rows: list[dict]) -> Path:
    """A workspace that keeps copies of a record id, as Azure (and the emulator) does."""
    from hal_logging.emulator.store import Workspace as EmulatorWorkspace

    path = tmp_path / "emu.db"
    ws = EmulatorWorkspace(str(path))
    ws.insert(rows)
    ws.close()
    return path


def _no_id(i: int, **kw: object) -> dict:
    row = _row(i, **kw)  # type: ignore[arg-type]
    del row["Properties"]["hal"]
    return row


def test_dedupe_keeps_one_row_per_record_id(tmp_path: Path) -> None:
    copy_of_2 = _row(2, t="2024-05-01T01:00:00")  # a retry's copy, stored later, later time
    path = _emulator_db(
        tmp_path, [_row(1), _row(2), _no_id(3), _no_id(3), _row(4), copy_of_2, _row(1)]
    )
    everything = _json_rows(_query("--db", str(path), "--json", "--limit", "0"))
    assert len(everything) == 7
    rows = _json_rows(_query("--db", str(path), "--json", "--limit", "0", "--dedupe"))
    assert [r["Properties"]["i"] for r in rows] == [1, 2, 3, 3, 4]  # no id: all kept
    assert [r["TimeGenerated"][:19] for r in rows if r["Properties"]["i"] == 2] == [
        "2024-05-01T00:00:00"
    ]  # the first stored copy
    # A copy outside the filters never hides one inside them.
    late = _json_rows(
        _query("--db", str(path), "--json", "--dedupe", "--since", "2024-05-01T00:30:00Z")
    )
    assert [(r["Properties"]["i"], r["TimeGenerated"][:13]) for r in late] == [(2, "2024-05-01T01")]
    # Works with the other filters and the table view.
    assert [
        r["Properties"]["i"]
        for r in _json_rows(_query("--db", str(path), "--json", "--dedupe", "--limit", "2"))
    ] == [3, 4]
    table = _query("--db", str(path), "--dedupe", "--limit", "0")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 5


def test_dedupe_reads_the_json_when_the_table_has_no_id_column(tmp_path: Path) -> None:
    """A table made by other means (the thirteen columns only): the id comes from Properties."""
    import sqlite3

    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    cols = ", ".join(f'"{c}"' for c in schema.COLUMN_NAMES)
    conn.execute(f'CREATE TABLE "BenchmarkRuns_CL" ({cols})')
    for r in [_row(1), _row(1), _row(2), _no_id(3), _no_id(3)]:
        r["Properties"] = json.dumps(r["Properties"])
        conn.execute(
            f'INSERT INTO "BenchmarkRuns_CL" VALUES ({", ".join("?" * len(schema.COLUMN_NAMES))})',
            [r[c] for c in schema.COLUMN_NAMES],
        )
    conn.execute(
        'INSERT INTO "BenchmarkRuns_CL" ("Message", "Properties") VALUES (?, ?)',
        ["odd", "{not json"],
    )
    conn.commit()
    conn.close()
    rows = _json_rows(_query("--db", str(path), "--json", "--dedupe"))
    assert [r["Message"] for r in rows] == [
        "odd",
        "message 1",
        "message 2",
        "message 3",
        "message 3",
    ]


def test_follow_dedupe_skips_copies_arriving_later(tmp_path: Path) -> None:
    from hal_logging.emulator.store import Workspace as EmulatorWorkspace

    path = _emulator_db(tmp_path, [_row(1)])
    argv = ["query", "--db", str(path), "--json", "--follow", "--dedupe"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hal_logging.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["Properties"]["i"] == 1
        ws = EmulatorWorkspace(str(path))
        ws.insert([_row(1), _row(2)])  # a retry's copy of 1, then a new row
        ws.close()
        assert json.loads(proc.stdout.readline())["Properties"]["i"] == 2
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert '"i":1' not in out


# -- rows that carried claims ------------------------------------------------------------


def test_table_marks_rows_that_carried_claims(tmp_path: Path) -> None:
    forged = _row(2, logger="container:hal_logging.forward", msg="command finished: exit 0")
    forged["Properties"]["hal"]["claimed"] = {"LoggerName": "hal_logging.forward"}
    context_claim = _row(3)
    context_claim["Properties"]["hal"]["claimed"] = {"RunID": "someone-else"}
    empty_claim = _row(4)
    empty_claim["Properties"]["hal"]["claimed"] = {}
    path = tmp_path / "w.db"
    ws = Workspace(str(path))
    ws.insert_rows([_row(1), forged, context_claim, empty_claim])
    ws.close()
    res = _query("--db", str(path))
    assert res.returncode == 0, res.stderr
    marks = [line.split("\t")[0] for line in res.stdout.splitlines()]
    assert marks == ["", "!", "!", ""]
    assert res.stderr.count("Properties.hal.claimed") == 1  # the legend, once
    assert res.stderr.strip().startswith("! = ")
    rows = _json_rows(_query("--db", str(path), "--json"))
    assert rows[1]["Properties"]["hal"]["claimed"] == {"LoggerName": "hal_logging.forward"}
    assert rows[1]["LoggerName"] == "container:hal_logging.forward"
    assert rows[2]["Properties"]["hal"]["claimed"] == {"RunID": "someone-else"}
    clean = _query("--db", str(path), "--task-id", "T1", "--contains", "message 1")
    assert clean.stdout.split("\t")[0] == "" and clean.stderr == ""  # no marks, no legend
