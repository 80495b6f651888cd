"""Shipping finished files: rows, trust, checkpoints, resume, the kill test, dry run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

from hal_logging import schema
from hal_logging.pipeline.metering import billed_bytes

from .forward_helpers import (
    db_count,
    db_rows,
    run_forward,
    start_forward,
    wire_line,
    write_mixed_file,
)
from .waiting import wait_for


def _summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_ships_a_file_with_trusted_context_and_summary(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    lines = [wire_line(i, run="claimed-run", task="T1") for i in range(20)]
    lines.insert(5, b"a plain print")
    log.write_bytes(b"\n".join(lines) + b"\n")
    res = run_forward(
        ["--run-id", "R1", "--benchmark", "swe", "--summary-json", "s.json", str(log)], tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "local workspace hal-logs.db" in res.stderr  # the one line saying where rows went
    rows = db_rows(tmp_path / "hal-logs.db")
    assert len(rows) == 21
    assert {r["RunID"] for r in rows} == {"R1"}  # the flag wins over the container's claim
    assert {r["Benchmark"] for r in rows} == {"swe"}
    wired = [r for r in rows if r["Properties"]["hal"]["format"] == "wire"]
    assert len(wired) == 20
    assert {r["TaskID"] for r in wired} == {"T1"}  # not known on the VM side: the container's value
    assert wired[0]["Properties"]["hal"]["claimed"]["RunID"] == "claimed-run"
    assert len({r["_record_id"] for r in rows}) == 21
    s = _summary(tmp_path / "s.json")
    assert (
        s["rows"] == 21 and s["delivered"] == 21 and s["undelivered"] == 0 and s["exit_status"] == 0
    )
    assert s["estimated_billed_bytes"] > 0


def test_rerun_resumes_and_never_stores_twice(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(b"\n".join(wire_line(i) for i in range(100)) + b"\n")
    assert run_forward([str(log)], tmp_path).returncode == 0
    assert db_count(tmp_path / "hal-logs.db") == 100
    assert (tmp_path / "run.log.hal-checkpoint").exists()

    res = run_forward(["--summary-json", "s.json", str(log)], tmp_path)
    assert res.returncode == 0 and "already shipped" in res.stderr
    assert _summary(tmp_path / "s.json")["rows"] == 0

    with log.open("ab") as fh:
        fh.write(b"\n".join(wire_line(i) for i in range(100, 130)) + b"\n")
    assert run_forward(["--summary-json", "s.json", str(log)], tmp_path).returncode == 0
    assert _summary(tmp_path / "s.json")["rows"] == 30  # only the appended lines were read
    assert db_count(tmp_path / "hal-logs.db") == 130

    # Without the checkpoint everything is read again: the workspace ignores known ids.
    res = run_forward(["--no-checkpoint", "--summary-json", "s.json", str(log)], tmp_path)
    assert res.returncode == 0
    s = _summary(tmp_path / "s.json")
    assert s["rows"] == 130 and s["duplicates"] == 130
    assert db_count(tmp_path / "hal-logs.db") == 130


def test_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(b"\n".join(wire_line(i) for i in range(50)) + b"\n")
    assert run_forward([str(log)], tmp_path).returncode == 0
    # Same name, new file (different inode), longer than the saved offset.
    new = tmp_path / "new.log"
    new.write_bytes(b"\n".join(wire_line(i, msg=f"second file {i}") for i in range(80)) + b"\n")
    new.replace(log)
    assert run_forward(["--summary-json", "s.json", str(log)], tmp_path).returncode == 0
    assert _summary(tmp_path / "s.json")["rows"] == 80
    assert (
        sum(
            m.startswith("second file")
            for m in (r["Message"] for r in db_rows(tmp_path / "hal-logs.db"))
        )
        == 80
    )


def test_rewritten_file_same_inode_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(b"\n".join(wire_line(i) for i in range(50)) + b"\n")
    assert run_forward([str(log)], tmp_path).returncode == 0
    # copytruncate-style: same inode and first line, different bytes before the offset.
    body = [wire_line(0)] + [wire_line(i, msg=f"rewritten line {i}") for i in range(1, 90)]
    with log.open("r+b") as fh:
        fh.truncate(0)
        fh.write(b"\n".join(body) + b"\n")
    assert run_forward(["--summary-json", "s.json", str(log)], tmp_path).returncode == 0
    assert _summary(tmp_path / "s.json")["rows"] == 90
    assert sum("rewritten" in r["Message"] for r in db_rows(tmp_path / "hal-logs.db")) == 89


def _comparable(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by record id; TimeGenerated of rows without their own time is the read time."""
    out = {}
    for r in rows:
        r = dict(r)
        if r["Properties"]["hal"]["format"] != "wire":
            r.pop("TimeGenerated")
        out[r["_record_id"]] = r
    return out


def test_kill_test_sigkill_at_random_points_then_rerun_equals_clean_run(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    write_mixed_file(log, 50_000)
    common = ["--run-id", "R-kill", "--batch-rows", "1000", "--quiet"]

    clean = run_forward(
        [*common, "--db", "clean.db", "--checkpoint", "clean.ckpt", str(log)], tmp_path
    )
    assert clean.returncode == 0, clean.stderr
    clean_rows = db_rows(tmp_path / "clean.db")
    assert len(clean_rows) > 49_000

    rng = random.Random(20240501)
    kill_db = tmp_path / "kill.db"
    targets = sorted(rng.sample(range(500, 45_000), 4))
    kills = 0
    for target in targets:
        proc = start_forward(
            [*common, "--db", "kill.db", "--checkpoint", "kill.ckpt", str(log)], tmp_path
        )
        try:
            wait_for(
                lambda t=target, p=proc: db_count(kill_db) >= t or p.poll() is not None,
                60,
                f"{target} rows",
            )
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
    assert kills >= 2  # the forwarder really died mid-file, more than once
    assert db_count(kill_db) < len(clean_rows) or kills < len(targets)

    final = run_forward(
        [*common, "--db", "kill.db", "--checkpoint", "kill.ckpt", str(log)], tmp_path
    )
    assert final.returncode == 0, final.stderr
    killed_rows = db_rows(kill_db)
    assert len(killed_rows) == len(clean_rows)  # no duplicates, nothing missing
    assert _comparable(killed_rows) == _comparable(clean_rows)


def test_dry_run_writes_nothing_and_matches_the_real_run(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    lines = [
        wire_line(i, level="DEBUG" if i % 3 else "ERROR", logger=f"lib{i % 4}") for i in range(300)
    ]
    lines += [b"print \xc3\xa9t\xc3\xa9 %d" % i for i in range(40)]
    log.write_bytes(b"\n".join(lines) + b"\n")
    dry = run_forward(
        [
            "--dry-run",
            "--no-fold-repeats",
            "--summary-json",
            "dry.json",
            "--tasks-per-month",
            "500",
            "--price-per-gb",
            "2.5",
            str(log),
        ],
        tmp_path,
    )
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "hal-logs.db").exists()
    assert not (tmp_path / "run.log.hal-checkpoint").exists()
    assert "by level" in dry.stderr and "by logger" in dry.stderr and "per month" in dry.stderr
    d = _summary(tmp_path / "dry.json")
    assert d["cost"]["tasks_per_month"] == 500 and d["cost"]["price_per_gb"] == 2.5

    real = run_forward(["--no-fold-repeats", "--summary-json", "real.json", str(log)], tmp_path)
    assert real.returncode == 0, real.stderr
    rows = db_rows(tmp_path / "hal-logs.db")
    stored = sum(
        billed_bytes(
            r, json.dumps(r["Properties"], separators=(",", ":"), ensure_ascii=False).encode()
        )
        for r in rows
    )
    assert d["rows"] == len(rows)
    assert d["cost"]["billed_bytes"] == stored
    assert d["rows_by_level"] == {lv: sum(r["Level"] == lv for r in rows) for lv in schema.LEVELS}
    by_logger = d["cost"]["by_logger"]
    assert {k: v["rows"] for k, v in by_logger.items()} == {
        lg: sum(r["LoggerName"] == lg for r in rows) for lg in {r["LoggerName"] for r in rows}
    }


def test_unreadable_and_missing_inputs_give_clear_errors(tmp_path: Path) -> None:
    res = run_forward([str(tmp_path / "nope.log")], tmp_path)
    assert res.returncode == 1
    assert "no such file" in res.stderr and "Traceback" not in res.stderr


def test_sigterm_while_shipping_keeps_checkpoint_and_exits_75(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_bytes(b"\n".join(wire_line(i) for i in range(100_000)) + b"\n")
    proc = start_forward(["--batch-rows", "500", str(log)], tmp_path)
    wait_for(
        lambda: db_count(tmp_path / "hal-logs.db") > 0 or proc.poll() is not None, 60, "first rows"
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal landed: nothing to check
        assert db_count(tmp_path / "hal-logs.db") == 100_000
        return
    assert proc.returncode == 75, err
    assert "rerun the same command" in err and "Traceback" not in err
    got = db_count(tmp_path / "hal-logs.db")
    res = run_forward([str(log)], tmp_path)
    assert res.returncode == 0
    assert db_count(tmp_path / "hal-logs.db") == 100_000 > got


def test_python_dash_m_entry_point_and_help(tmp_path: Path) -> None:
    res = subprocess.run(
        [__import__("sys").executable, "-m", "hal_logging.cli.forward", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0
    for flag in (
        "--follow",
        "--until-pid",
        "--idle-exit",
        "--raw-log",
        "--run-id",
        "--log-type",
        "--db",
        "--endpoint",
        "--rule-id",
        "--stream",
        "--checkpoint",
        "--batch-rows",
        "--flush-interval",
        "--drain-timeout",
        "--summary-json",
        "--dry-run",
        "--sink",
    ):
        assert flag in res.stdout, flag
