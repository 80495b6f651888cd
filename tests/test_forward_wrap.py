"""Wrap mode: the example entrypoint under the forwarder; streams, exit status, trust,
raw log, signal forwarding, and a delivery failure that keeps the rows."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

from hal_logging import schema

from .forward_helpers import (
    ROOT,
    db_rows,
    messages,
    reaped,
    run_forward,
    start_forward,
    write_signal_catcher,
)
from .waiting import wait_for

ENTRYPOINT = str(ROOT / "examples" / "entrypoint.py")


def test_example_entrypoint_rows_streams_and_exit_status(tmp_path: Path) -> None:
    res = run_forward(
        [
            "--run-id",
            "R-wrap",
            "--task-id",
            "T-3",
            "--raw-log",
            "raw.log",
            "--summary-json",
            "s.json",
            "--",
            sys.executable,
            ENTRYPOINT,
            "--fail",
        ],
        tmp_path,
        env={"HAL_AGENT_NAME": "example-agent"},
    )
    assert res.returncode == 1, res.stderr  # the command's own status
    rows = db_rows(tmp_path / "hal-logs.db")
    assert {r["RunID"] for r in rows} == {"R-wrap"} and {r["TaskID"] for r in rows} == {"T-3"}
    streams = {r["Properties"]["hal"]["stream"] for r in rows}
    assert {"stdout", "stderr"} <= streams
    wire = [r for r in rows if r["Properties"]["hal"]["format"] == "wire"]
    assert any(r["Message"].startswith("container started") for r in wire)
    assert all(r["Properties"]["hal"]["stream"] == "stdout" for r in wire)
    assert any(r["Level"] == "ERROR" and r["Message"].startswith("task failed") for r in wire)
    assert any(r["Level"] == "WARNING" and "exception" in r["Properties"] for r in wire)
    assert any(
        r["LoggerName"] == schema.LOGGER_STDOUT and r["Message"].startswith("python ") for r in rows
    )
    assert all(r["AgentName"] == "example-agent" for r in rows)
    final = [r for r in rows if r["LoggerName"] == "hal_logging.forward"]
    assert len(final) == 1
    assert final[0]["LogType"] == "VMOperation" and final[0]["Properties"]["exit_status"] == 1
    assert final[0]["Level"] == "ERROR"
    raw = (tmp_path / "raw.log").read_bytes()
    assert b"container started" in raw and b"agent steps" in raw  # both streams, raw bytes
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["command_exit_status"] == 1 and s["undelivered"] == 0 and s["delivered"] == len(rows)


def test_container_cannot_claim_another_run_and_dash_e_context_is_trusted(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import hal_logging
        hal_logging.configure()
        hal_logging.get_logger("agent").info("hello")
        print("plain", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        sys.exit(3)
    """)
    )
    # The child's environment claims run "evil"; the forwarder knows R-good (flag) and
    # T-9 (the command's own -e flag, which the VM side wrote).
    res = run_forward(
        [
            "--run-id",
            "R-good",
            "--",
            "env",
            "HAL_RUN_ID=evil",
            "HAL_TASK_ID=T-9",
            sys.executable,
            str(script),
            str(ROOT),
            "-e",
            "HAL_TASK_ID=T-9",
        ],
        tmp_path,
    )
    assert res.returncode == 3, res.stderr
    rows = db_rows(tmp_path / "hal-logs.db")
    assert {r["RunID"] for r in rows} == {"R-good"}
    assert {r["TaskID"] for r in rows} == {"T-9"}
    hello = next(r for r in rows if r["Message"] == "hello")
    assert hello["Properties"]["hal"]["claimed"]["RunID"] == "evil"
    by_msg = {r["Message"]: r["Properties"]["hal"]["stream"] for r in rows}
    assert by_msg["plain"] == "stdout" and by_msg["to stderr"] == "stderr"


def test_sigterm_is_passed_to_the_command(tmp_path: Path) -> None:
    script = write_signal_catcher(tmp_path / "child.py", signal.SIGTERM, 7)
    proc = start_forward(["--flush-interval", "0.1", "--", sys.executable, str(script)], tmp_path)
    with reaped(proc):
        wait_for(lambda: "ready" in messages(tmp_path / "hal-logs.db"), what="the child to start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert "got SIGTERM" in messages(tmp_path / "hal-logs.db")


def test_delivery_failure_exits_75_and_keeps_rows_for_a_later_run(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text("for i in range(50):\n    print(f'line {i}')\n")
    res = run_forward(
        [
            "--sink",
            "jsonl",
            "--output",
            "/dev/full",
            "--run-id",
            "R-x",
            "--",
            sys.executable,
            str(script),
        ],
        tmp_path,
    )
    assert res.returncode == 75, res.stderr
    assert "not delivered" in res.stderr and "Traceback" not in res.stderr
    spools = list(tmp_path.glob("hal-forward-undelivered-*.jsonl"))
    assert len(spools) == 1
    # The kept rows ship later, with every column intact.
    res2 = run_forward(["--run-id", "R-x", str(spools[0])], tmp_path)
    assert res2.returncode == 0, res2.stderr
    got = messages(tmp_path / "hal-logs.db")
    assert sorted(m for m in got if m.startswith("line ")) == sorted(f"line {i}" for i in range(50))


def test_command_not_found_is_a_clear_error(tmp_path: Path) -> None:
    res = run_forward(["--", "definitely-not-a-command-xyz"], tmp_path)
    assert res.returncode == 127  # as a shell says it (2 is a usage error)
    assert "command not found" in res.stderr and "Traceback" not in res.stderr
