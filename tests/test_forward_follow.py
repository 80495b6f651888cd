"""Follow mode: appends, copytruncate, rotation, SIGTERM drain, --until-pid, --idle-exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from .forward_helpers import db_rows, messages, reaped, start_forward
from .waiting import wait_for


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as fh:
        for line in lines:
            fh.write(line + "\n")
        fh.flush()


def test_follow_appends_truncation_rotation_then_sigterm_drains(tmp_path: Path) -> None:
    log = tmp_path / "docker_output.log"
    db = tmp_path / "hal-logs.db"
    _append(log, "first line")
    proc = start_forward(
        [
            "--follow",
            "--run-id",
            "R-follow",
            "--flush-interval",
            "0.2",
            "--summary-json",
            "s.json",
            str(log),
        ],
        tmp_path,
    )
    with reaped(proc):
        wait_for(lambda: "first line" in messages(db), what="the first line")
        _append(log, "appended 1", "appended 2")
        wait_for(lambda: "appended 2" in messages(db), what="appended lines")

        # copytruncate: copy away, then truncate the same inode and keep writing.
        (tmp_path / "docker_output.log.1").write_bytes(log.read_bytes())
        with log.open("r+") as fh:
            fh.truncate(0)
        _append(log, "after truncate")
        wait_for(lambda: "after truncate" in messages(db), what="the line after truncation")

        # rotation: the old file moves away (and still gets a last line), a new one appears.
        rotated = tmp_path / "docker_output.log.2"
        log.rename(rotated)
        _append(rotated, "late line in the old file")
        _append(log, "new file line")
        wait_for(lambda: "new file line" in messages(db), what="the new file's line")
        wait_for(lambda: "late line in the old file" in messages(db), what="the old file drained")

        # SIGTERM right after an append: the line is still delivered (drain, then exit).
        _append(log, "last words")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    got = messages(db)
    expected = [
        "first line",
        "appended 1",
        "appended 2",
        "after truncate",
        "late line in the old file",
        "new file line",
        "last words",
    ]
    assert sorted(got) == sorted(expected)  # everything once, nothing twice
    rows = db_rows(db)
    assert {r["RunID"] for r in rows} == {"R-follow"}
    assert len({r["_record_id"] for r in rows}) == len(rows)
    assert json.loads((tmp_path / "s.json").read_text())["delivered"] == len(expected)


def test_follow_stops_when_until_pid_exits_and_resumes_later(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    db = tmp_path / "hal-logs.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        proc = start_forward(["--follow", "--until-pid", str(writer.pid), str(log)], tmp_path)
        _append(log, "one", "two")  # the file appears after the forwarder started
        wait_for(lambda: len(messages(db)) == 2, what="two rows")
        _append(log, "three")
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
        _, err = proc.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert proc.returncode == 0, err
    assert sorted(messages(db)) == ["one", "three", "two"]
    # A later run resumes from the checkpoint: only the new line is read.
    _append(log, "four")
    proc = start_forward(
        ["--follow", "--idle-exit", "0.5", "--summary-json", "s.json", str(log)], tmp_path
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["rows"] == 1
    assert sorted(messages(db)) == ["four", "one", "three", "two"]


def test_follow_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    db = tmp_path / "hal-logs.db"
    log.write_text("complete\nhalf of a li")
    proc = start_forward(["--follow", "--flush-interval", "0.1", str(log)], tmp_path)
    with reaped(proc):
        wait_for(lambda: "complete" in messages(db), what="the complete line")
        with log.open("a") as fh:
            fh.write("ne\n")
        wait_for(lambda: "half of a line" in messages(db), what="the joined line")
        assert "half of a li" not in messages(db)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert os.path.exists(str(log) + ".hal-checkpoint")
