"""The report's figures on a hand-built workspace: outcomes, levels, bytes, first errors, bounds.

Rows go in through the real workspace writer (:class:`Workspace`); the expected
figures are computed here from the rows themselves, not from the report's SQL.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hal_logging import schema
from hal_logging.pipeline.sinks.sqlite import Workspace
from hal_logging.report import data
from hal_logging.report.render import render, script_json
from tests.forward_helpers import agent_row

RUN = "R1"
HOSTILE = "<script>window.__pwned = 1</script>"
_n = 0


def row(
    task: str,
    second: int,
    level: str = "INFO",
    msg: str = "",
    *,
    run: str = RUN,
    logger: str = "agent",
    log_type: str = "AgentLog",
    props: dict[str, Any] | None = None,
    hal: dict[str, Any] | None = None,
    vm: str = "vm-1",
) -> dict[str, Any]:
    global _n
    _n += 1
    r = agent_row(
        f"2026-12-01T10:{second // 60:02d}:{second % 60:02d}.{_n:06d}Z",
        level,
        msg or f"message {_n}",
        logger,
        run,
        task,
        Benchmark="bench",
        AgentName="agent-x",
        VMName=vm,
        LogType=log_type,
    )
    r["Properties"] = {
        **(props or {}),
        "hal": {"record_id": f"rid-{_n}", "stream": "stdout", "format": "text", **(hal or {})},
    }
    return r


def exit_row(task: str, second: int, status: int, **kw: Any) -> dict[str, Any]:
    """The forwarder's final row, shaped as ``Runner.command_row`` writes it."""
    return row(
        task,
        second,
        "INFO" if status == 0 else "ERROR",
        f"command python finished: exit status {status}",
        logger="hal_logging.forward",
        log_type="VMOperation",
        props={"command": "python", "exit_status": status, "duration_seconds": 12.5},
        hal={"format": "forwarder", "stream": "unknown"},
        **kw,
    )


def exc(type_: str, message: str) -> dict[str, Any]:
    return {
        "exception": {
            "type": type_,
            "message": message,
            "stacktrace": f"Traceback...\n{type_}: {message}",
        }
    }


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    return [
        # ok: exit 0, a warning, a claimed row and a cut row.
        row("ok", 0),
        row("ok", 10, "WARNING", "careful"),
        row("ok", 20, hal={"claimed": {"RunID": "other"}}),
        row("ok", 25, hal={"original_length": {"Message": 70000}}),
        exit_row("ok", 30, 0),
        # failed: the first error is the earliest ERROR/CRITICAL, not the forwarder's row.
        row("failed", 0),
        row("failed", 5, "ERROR", "first: boom", props=exc("ValueError", "boom")),
        row("failed", 6, "CRITICAL", "second"),
        exit_row("failed", 7, 2),
        # killed by SIGKILL: 128 + 9.
        row("killed", 0, "DEBUG"),
        exit_row("killed", 3, 137),
        # no exit row yet.
        row("running", 0),
        row("running", 1, "ERROR", "still going"),
        # forged outcomes: the container's claim to the forwarder's rows (as the VM side
        # stores it) and a renamed one; neither counts.
        row(
            "forged",
            0,
            msg="command python finished: exit status 0",
            logger="hal_logging.forward",
            props={"exit_status": 0},
            hal={"claimed": {"LogType": "VMOperation", "hal": {"format": "forwarder"}}},
        ),
        row(
            "forged",
            1,
            logger="container:hal_logging.forward",
            log_type="VMOperation",
            props={"exit_status": 0},
        ),
        row(
            "forged",
            2,
            logger="hal_logging.forward",
            log_type="VMOperation",
            props={"exit_status": 0},
            hal={"format": "wire"},
        ),
        # a rerun: the latest exit row wins.
        exit_row("rerun", 0, 1),
        exit_row("rerun", 50, 0),
        # another run: never counted.
        row("ok", 0, "ERROR", run="R2"),
        exit_row("other", 0, 1, run="R2"),
    ]


@pytest.fixture
def conn(tmp_path: Path, rows: list[dict[str, Any]]) -> sqlite3.Connection:
    path = tmp_path / "w.db"
    ws = Workspace(str(path))
    ws.insert_rows(rows)
    ws.close()
    return data.connect(str(path))


def _tasks(run: data.Run) -> dict[str, data.Task]:
    return {t.task_id: t for t in run.tasks}


def test_outcomes_come_only_from_the_forwarders_own_rows(conn: sqlite3.Connection) -> None:
    run = data.load_run(conn, RUN)
    t = _tasks(run)
    assert {k: (v.outcome, v.exit_status) for k, v in t.items()} == {
        "ok": ("ok", 0),
        "failed": ("failed", 2),
        "killed": ("killed", 137),
        "running": ("unknown", None),
        "forged": ("unknown", None),
        "rerun": ("ok", 0),
    }
    assert run.outcomes == {"ok": 2, "failed": 1, "killed": 1, "unknown": 2}
    assert data.describe_status(137) == "137 (killed by SIGKILL)"
    assert data.describe_status(2) == "2" and data.describe_status(None) == "no exit row"
    assert t["ok"].duration == 12.5  # the command's own time, from the exit row
    assert t["running"].duration == pytest.approx(1.0, abs=0.01)  # first to last row


def test_levels_bytes_and_flags(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    run = data.load_run(conn, RUN)
    mine = [r for r in rows if r["RunID"] == RUN]
    assert run.rows == len(mine)
    for lv in schema.LEVELS:
        assert run.levels[lv] == sum(r["Level"] == lv for r in mine)
    # Bytes: the UTF-8 text of every column as stored (Properties as its JSON text).
    stored = conn.execute('SELECT * FROM "BenchmarkRuns_CL" WHERE "RunID" = ?', (RUN,)).fetchall()
    expected = sum(len(str(v).encode()) for r in stored for v in r[: len(schema.COLUMN_NAMES)])
    assert run.bytes == expected
    assert run.cost_usd == pytest.approx(expected / 1e9 * data.DEFAULT_PRICE_PER_GB)
    t = _tasks(run)
    assert (t["ok"].claimed, t["ok"].cut, t["ok"].warnings) == (1, 1, 1)
    assert t["forged"].claimed == 1
    assert t["failed"].levels == {"DEBUG": 0, "INFO": 1, "WARNING": 0, "ERROR": 2, "CRITICAL": 1}
    assert run.values("Benchmark") == [("bench", len(mine))]
    assert run.values("VMName") == [("vm-1", len(mine))]


def test_first_error(conn: sqlite3.Connection) -> None:
    t = _tasks(data.load_run(conn, RUN))
    assert (t["failed"].first_error, t["failed"].first_error_type) == ("first: boom", "ValueError")
    assert t["running"].first_error == "still going"
    assert t["killed"].first_error == ""  # only the forwarder's ERROR row: not an error message
    assert t["rerun"].first_error == ""


def test_timelines_add_up(conn: sqlite3.Connection) -> None:
    run = data.load_run(conn, RUN, buckets=10)
    for task in run.tasks:
        assert len(task.timeline) == 10
        assert sum(b[0] for b in task.timeline) == task.rows
        assert sum(b[2] for b in task.timeline) == task.errors
        assert sum(b[1] for b in task.timeline) == task.warnings
    assert sum(b[0] for b in run.timeline) == run.rows
    t = _tasks(run)
    assert t["failed"].timeline[0][0] == 1 and t["failed"].timeline[-1][2] >= 1


def test_unknown_run_is_empty_and_known_runs_are_listed(conn: sqlite3.Connection) -> None:
    assert data.load_run(conn, "nope").tasks == []
    assert set(data.known_runs(conn)) == {RUN, "R2"}


def test_tail_is_bounded_and_keeps_the_first_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    ws = Workspace(str(path))
    big = [row("big", 0, "ERROR", "early error")] + [row("big", i) for i in range(1, 60)]
    small = [row("small", i) for i in range(5)] + [exit_row("small", 9, 0)]
    ws.insert_rows(big + small)
    ws.close()
    conn = data.connect(str(path))
    t = _tasks(data.load_run(conn, RUN, tail_rows=10))
    assert t["big"].lines[0].message == "early error"
    assert len(t["big"].lines) == 11 and t["big"].left_out == 49
    assert (t["big"].shown_tail, t["big"].shown_head_errors) == (10, 1)
    assert [ln.message for ln in t["big"].lines][1:] == [r["Message"] for r in big[-10:]]
    assert t["small"].left_out == 0
    # A page budget smaller than the tails: the task with errors gets its share first.
    t = _tasks(data.load_run(conn, RUN, tail_rows=10, max_rows=12))
    assert t["big"].shown_tail == 10 and len(t["small"].lines) == 2


def test_allocate_rows_fills_evenly() -> None:
    assert data.allocate_rows([5, 100, 100], 55) == [5, 25, 25]
    assert data.allocate_rows([5, 5], 100) == [5, 5]
    assert data.allocate_rows([10, 10, 10], 0) == [0, 0, 0]
    assert sum(data.allocate_rows([7, 3, 50, 2], 30)) == 30


def test_visible_shows_control_characters_and_cuts() -> None:
    assert data.visible("\x1b[31mred\x1b[0m\x07\tok\n", 100) == "\u241b[31mred\u241b[0m\u2407\tok\n"
    cut = data.visible("x" * 50, 10)
    assert cut.startswith("x" * 10 + "…[cut in the report: 40 more characters")


def test_script_json_cannot_end_its_element() -> None:
    value = ["</script><script>alert(1)</script>", "<!-- x", "a\u2028b\u2029c", "&amp;"]
    text = str(script_json(value))
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == value


def test_page_escapes_everything_and_names_its_one_script(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    ws = Workspace(str(path))
    ws.insert_rows(
        [
            row("t<u>1</u>", 0, "ERROR", HOSTILE, props=exc("E<i>", HOSTILE)),
            exit_row("t<u>1</u>", 1, 1),
        ]
    )
    ws.close()
    run = data.load_run(data.connect(str(path)), RUN)
    html = render(run)
    assert HOSTILE not in html and "<u>1</u>" not in html and "E<i>" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # the table, escaped
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1  # the page's own; data sits in type=application/json elements
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp is not None
    policy = html_lib.unescape(csp.group(1))
    assert f"script-src 'sha256-{digest}'" in policy
    assert (
        policy.startswith("default-src 'none';")
        and "unsafe-inline" not in policy.split("script-src")[1]
    )
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    assert 'http-equiv="refresh"' not in html
    assert 'http-equiv="refresh" content="5"' in render(run, follow_interval=5)


def test_import_hal_logging_does_not_import_jinja2() -> None:
    code = "import sys, hal_logging, hal_logging.report; print('jinja2' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
