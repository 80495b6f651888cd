"""Wrap mode's journal (issue 16): written before parsing, replayed with the live run's ids.

Real subprocesses and real SQLite. The acceptance test SIGKILLs the forwarder
mid-run and resumes from the journal: the workspace must hold exactly the
rows of a clean pass over the same bytes (same record ids, times and streams),
nothing lost between what was delivered live and what the resume shipped,
nothing twice, and one final row.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from hal_logging.pipeline.journal import (
    KIND_DATA,
    JournalReader,
    JournalWriter,
    open_journal,
    stream_bytes,
)
from tests.forward_helpers import (
    db_count,
    db_rows,
    forward_cmd,
    row_fields,
    run_forward,
    start_forward,
)
from tests.waiting import wait_for

NUMBERED = """\
import sys, time
n, delay = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    print(f"out line {i}", flush=True)
    print(f"err line {i}", file=sys.stderr, flush=True)
    if i % 7 == 3:
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "x.py", line 1, in <module>', file=sys.stderr)
        print(f"ValueError: boom {i}", file=sys.stderr, flush=True)
    time.sleep(delay)
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


def _journal(tmp: Path) -> Path:
    found = sorted(tmp.glob("hal-forward-journal-*.haljournal"))
    assert len(found) == 1, found
    return found[0]


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["Properties"]["hal"]["record_id"], *row_fields(r))


def _by_id(db: Path) -> dict[str, tuple[Any, ...]]:
    return {k[0]: k for k in map(_key, db_rows(db))}


def test_replay_of_a_clean_run_makes_the_same_rows(tmp_path: Path) -> None:
    (tmp_path / "cmd.py").write_text(NUMBERED)
    live = run_forward(
        [
            "--db",
            "live.db",
            "--run-id",
            "R1",
            "--task-id",
            "T1",
            "--",
            sys.executable,
            "cmd.py",
            "30",
            "0.01",
            "3",
        ],
        tmp_path,
    )
    assert live.returncode == 3, live.stderr
    journal = _journal(tmp_path)
    assert oct(journal.stat().st_mode & 0o777) == "0o600"  # the raw bytes may hold secrets
    replay = run_forward(["--db", "replay.db", "--resume-journal", str(journal)], tmp_path)
    assert replay.returncode == 0, replay.stderr
    live_rows, replay_rows = _by_id(tmp_path / "live.db"), _by_id(tmp_path / "replay.db")
    assert live_rows == replay_rows  # ids, read times, messages, streams, context
    exits = [r for r in db_rows(tmp_path / "replay.db") if "exit_status" in r["Properties"]]
    assert [r["Properties"]["exit_status"] for r in exits] == [3]
    # Into the workspace that already holds the run: nothing to do.
    again = run_forward(
        ["--db", "live.db", "--resume-journal", str(journal), "--summary-json", "s.json"], tmp_path
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["delivered"] == 0
    assert db_count(tmp_path / "live.db") == len(live_rows)


def test_sigkill_mid_run_then_resume_equals_a_clean_run(tmp_path: Path) -> None:
    (tmp_path / "cmd.py").write_text(NUMBERED)
    env = {"HAL_RUN_ID": "R2", "HAL_TASK_ID": "T2"}
    # A clean run of the same command, for what the rows must look like.
    clean = run_forward(
        ["--db", "clean.db", "--", sys.executable, "cmd.py", "400", "0.002"], tmp_path / ".", env
    )
    assert clean.returncode == 0, clean.stderr
    for p in tmp_path.glob("hal-forward-*"):
        p.unlink()

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "cmd.py").write_text(NUMBERED)
    db = killed / "w.db"
    # Batches of 10 rows go out at once; the rest waits for the (long) flush interval,
    # so when the forwarder dies some rows it read were certainly not delivered.
    proc = start_forward(
        [
            "--db",
            str(db),
            "--batch-rows",
            "10",
            "--flush-interval",
            "30",
            "--",
            sys.executable,
            "cmd.py",
            "400",
            "0.02",
        ],
        killed,
        env,
    )
    try:
        wait_for(lambda: db_count(db) >= 40, 60, "rows delivered live")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    journal = _journal(killed)
    before = db_count(db)
    with open(journal, "rb") as fh:
        reader = JournalReader(fh)
        reader.read_header()
        sizes = stream_bytes(reader)
    assert sizes["stdout"][0] > 0 and sizes["stderr"][0] > 0

    resumed = run_forward(
        ["--db", str(db), "--resume-journal", str(journal), "--summary-json", "s.json"], killed
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((killed / "s.json").read_text())
    assert summary["delivered"] - summary.get("duplicates", 0) > 0  # it shipped what was missing
    assert "exit status is unknown" in resumed.stderr

    rows = db_rows(db)
    ids = [r["Properties"]["hal"]["record_id"] for r in rows]
    assert len(ids) == len(set(ids))  # nothing twice
    assert len(rows) > before

    # Nothing lost: every line read before the kill is there once, in its stream.
    def numbers(rs: list[dict[str, Any]], stream: str, prefix: str) -> list[int]:
        out = []
        for r in rs:
            m = re.fullmatch(prefix + r" line (\d+)", r["Message"])
            if m and r["Properties"]["hal"]["stream"] == stream:
                out.append(int(m.group(1)))
        return sorted(out)

    outs, errs = numbers(rows, "stdout", "out"), numbers(rows, "stderr", "err")
    assert outs == list(range(len(outs))) and errs == list(range(len(errs)))
    assert sizes["stdout"][0] == sum(len(f"out line {i}\n") for i in outs)

    # The same rows as a clean pass over the same bytes (a fresh workspace)...
    fresh = run_forward(["--db", "fresh.db", "--resume-journal", str(journal)], killed)
    assert fresh.returncode == 0, fresh.stderr
    assert _by_id(db) == _by_id(killed / "fresh.db")
    # ... and, message for message, the clean run's rows for those lines.
    clean_rows = db_rows(tmp_path / "clean.db")

    def shape(rs: list[dict[str, Any]], limit: dict[str, int]) -> list[tuple[str, str, str, str]]:
        out = []
        for r in rs:
            hal = r["Properties"]["hal"]
            m = re.search(r"(\d+)$", r["Message"])
            if r["LoggerName"] == "hal_logging.forward" or not m:
                continue
            if int(m.group(1)) < limit[hal["stream"]]:
                out.append((hal["stream"], r["Level"], r["Message"], r["LoggerName"]))
        return sorted(out)

    limit = {"stdout": len(outs), "stderr": len(errs)}
    assert shape(rows, limit) == shape(clean_rows, limit)
    finals = [r for r in rows if r["LoggerName"] == "hal_logging.forward"]
    assert len(finals) == 1
    assert finals[0]["Properties"]["status_unknown"] is True
    assert finals[0]["Properties"]["exit_status"] is None


def test_no_journal_and_usage(tmp_path: Path) -> None:
    (tmp_path / "cmd.py").write_text(NUMBERED)
    r = run_forward(
        ["--db", "a.db", "--no-journal", "--", sys.executable, "cmd.py", "2", "0"], tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob("*.haljournal"))
    journal_args = [
        "--db",
        "a.db",
        "--journal",
        str(tmp_path / "j.bin"),
        "--",
        sys.executable,
        "cmd.py",
        "2",
        "0",
    ]
    r = run_forward(journal_args, tmp_path)
    assert r.returncode == 0, r.stderr
    fh, reader = open_journal(str(tmp_path / "j.bin"))
    with fh:
        kinds = {rec.kind for rec in reader.records()}
    assert KIND_DATA in kinds
    # The same journal path again: refused, not overwritten.
    r = run_forward(journal_args, tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run_forward(["--db", "a.db", "--journal", "x", "f.log"], tmp_path)
    assert r.returncode == 2 and "wrap mode" in r.stderr
    r = run_forward(["--db", "a.db", "--resume-journal", str(tmp_path / "cmd.py")], tmp_path)
    assert r.returncode == 1 and "not a hal-logging journal" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j.haljournal"
    w = JournalWriter(str(path), {"invocation": "abc"})
    w.data("stdout", 0, 1.0, b"one\n")
    w.fed("stdout", 4, 1.0)
    w.data("stdout", 4, 2.0, b"two\n")
    w.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-2])  # a SIGKILL mid-write
    fh, reader = open_journal(str(path))
    with fh:
        recs = list(reader.records())
    assert [r.payload for r in recs if r.kind == KIND_DATA] == [b"one\n"]
    assert "cut short" in reader.torn
    assert os.path.getsize(path) == len(whole) - 2


def test_azure_down_in_wrap_mode_then_resume_into_azure_ships_each_row_once(
    tmp_path: Path,
) -> None:
    """The real SDK against the stand-in: a run whose rows could not be delivered names the
    journal; its resume ships every row once (the stand-in, like Azure, keeps duplicates)."""
    from tests.azure_helpers import client_env, started_emulator, workspace_record_ids
    from tests.forward_helpers import ROOT as _root

    (tmp_path / "cmd.py").write_text(NUMBERED)
    with started_emulator(tmp_path) as emu:
        env = client_env(emu.env())
        env["PYTHONPATH"] = str(_root)
        emu.set_faults(down="503")
        import subprocess

        def forward(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                forward_cmd(*args),
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        live = forward(
            "--drain-timeout",
            "2",
            "--run-id",
            "R",
            "--task-id",
            "T",
            "--",
            sys.executable,
            "cmd.py",
            "20",
            "0",
            "3",
        )
        assert live.returncode == 75, live.stderr
        journal = _journal(tmp_path)
        assert f"--resume-journal {journal}" in live.stderr
        assert not workspace_record_ids(tmp_path / "emu.db")
        emu.set_faults(down=None)
        resumed = forward("--resume-journal", str(journal))
        assert resumed.returncode == 0, resumed.stderr
        again = forward("--resume-journal", str(journal))
        assert again.returncode == 0, again.stderr
        ids = workspace_record_ids(tmp_path / "emu.db")
    assert len(ids) == len(set(ids)) and len(ids) > 40  # 20+20 lines, tracebacks, the final row
    # Into the local workspace (another destination): shipped whole, same ids.
    local = run_forward(["--db", "local.db", "--resume-journal", str(journal)], tmp_path)
    assert local.returncode == 0, local.stderr
    assert sorted(_by_id(tmp_path / "local.db")) == sorted(i for i in ids if i)
