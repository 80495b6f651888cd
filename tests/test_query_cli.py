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

from .forward_helpers import clean_env


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
    row = schema.empty_row()
    row.update(
        TimeGenerated=f"{t}.{i:06d}Z",
        Level=level,
        Message=msg or f"message {i}",
        LoggerName=logger,
        RunID=run,
        TaskID=task,
        LogType="AgentLog",
    )
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
    return subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "query", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=cwd,
    )


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
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hal_logging.cli.main",
            "query",
            "--db",
            str(db),
            "--json",
            "--follow",
            "--level",
            "ERROR",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
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
