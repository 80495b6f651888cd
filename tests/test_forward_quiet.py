"""Errors are never silent: ``-q`` hides progress and summaries, never a failure's cause.

Against the Azure stand-in: a 403 (the identity lacks its role) and a 404 (a
stream the rule does not declare) with ``-q`` still print the cause and where
the rows are kept, in a few lines; a clean run with ``-q`` prints nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.azure_helpers import started_emulator
from tests.forward_helpers import run_forward, wire_line

pytestmark = pytest.mark.timeout(120)


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "run.log"
    log.write_bytes(b"".join(wire_line(i) + b"\n" for i in range(50)))
    return log


def test_quiet_403_prints_the_cause(tmp_path: Path) -> None:
    log = _log(tmp_path)
    with started_emulator(tmp_path, forbidden=True) as emu:
        res = run_forward(["-q", str(log)], tmp_path, emu.env())
    assert res.returncode == 75
    err = res.stderr.strip().splitlines()
    assert 1 <= len(err) <= 3, res.stderr
    assert "403" in res.stderr and "Monitoring Metrics Publisher" in res.stderr
    assert "not delivered" in res.stderr and "checkpoint" in res.stderr


def test_quiet_404_prints_the_cause(tmp_path: Path) -> None:
    log = _log(tmp_path)
    with started_emulator(tmp_path) as emu:
        res = run_forward(
            ["-q", "--stream", "Custom-NoSuchStream_CL", str(log)], tmp_path, emu.env()
        )
        assert emu.workspace.count() == 0
    assert res.returncode == 75
    err = res.stderr.strip().splitlines()
    assert 1 <= len(err) <= 3, res.stderr
    assert "404" in res.stderr and "Custom-NoSuchStream_CL" in res.stderr
    assert "not delivered" in res.stderr


def test_quiet_unreadable_input_prints_the_cause(tmp_path: Path) -> None:
    log = _log(tmp_path)
    fifo_dir = tmp_path / "d"
    fifo_dir.mkdir()
    res = run_forward(["-q", "--db", str(tmp_path / "ws.db"), str(log), str(fifo_dir)], tmp_path)
    assert res.returncode == 1 and "is a directory" in res.stderr


def test_quiet_success_prints_nothing(tmp_path: Path) -> None:
    log = _log(tmp_path)
    with started_emulator(tmp_path) as emu:
        res = run_forward(["-q", str(log)], tmp_path, emu.env())
        assert emu.workspace.count() == 50
    assert res.returncode == 0 and res.stderr == ""
