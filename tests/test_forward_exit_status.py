"""Exit statuses a script can rely on, and a summary JSON that always holds both facts.

Through the real CLI: 127 and 126 for a command that cannot be started (with
the forwarder's row saying which, delivered), 73 for a destination that cannot
be used, and ``--exit-status auto|command|delivery`` choosing which fact the
status carries. Every summary written here is validated against the schema
shipped in the package.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hal_logging import _json
from hal_logging.pipeline import outcome
from tests.azure_helpers import started_emulator
from tests.forward_helpers import db_rows, run_forward

pytestmark = pytest.mark.timeout(120)

SCHEMA = json.loads(resources.files("hal_logging").joinpath("summary.schema.json").read_text())


def summary(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = _json.loads(path.read_bytes())
    jsonschema.validate(data, SCHEMA)
    return data


def forwarder_rows(db: Path) -> list[dict[str, Any]]:
    return [r for r in db_rows(db) if r["LoggerName"] == "hal_logging.forward"]


def test_statuses_are_defined_once() -> None:
    from hal_logging.cli import forward
    from hal_logging.pipeline import runner

    assert forward.EXIT_UNDELIVERED is outcome.EXIT_UNDELIVERED == 75
    assert runner.EXIT_UNDELIVERED is outcome.EXIT_UNDELIVERED
    assert (outcome.EXIT_DESTINATION, outcome.EXIT_NOT_FOUND, outcome.EXIT_CANNOT_EXECUTE) == (
        73,
        127,
        126,
    )


def test_command_not_found_is_127_with_a_row(tmp_path: Path) -> None:
    db, s = tmp_path / "ws.db", tmp_path / "s.json"
    res = run_forward(
        ["--db", str(db), "--summary-json", str(s), "--", "no-such-agent-cmd-xyz", "--flag"],
        tmp_path,
    )
    assert res.returncode == 127, res.stderr
    assert "command not found: 'no-such-agent-cmd-xyz'" in res.stderr
    (row,) = forwarder_rows(db)
    assert row == db_rows(db)[-1]  # the final row in the workspace
    assert row["LogType"] == "VMOperation" and row["Level"] == "ERROR"
    assert "could not be started" in row["Message"] and "not found" in row["Message"]
    assert row["Properties"]["command_outcome"] == "not-found"
    assert row["Properties"]["exit_status"] == 127
    data = summary(s)
    assert data["command_status"] == 127 and data["command_outcome"] == "not-found"
    assert data["delivery"]["complete"] is True and data["exit_status"] == 127


@pytest.mark.parametrize("kind", ["no-exec-bit", "directory"])
def test_command_that_cannot_be_executed_is_126_with_a_row(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        target = tmp_path / "adir"
        target.mkdir()
    else:
        target = tmp_path / "agent.sh"
        target.write_text("#!/bin/sh\necho hi\n")
        target.chmod(0o644)
    db, s = tmp_path / "ws.db", tmp_path / "s.json"
    res = run_forward(["--db", str(db), "--summary-json", str(s), "--", str(target)], tmp_path)
    assert res.returncode == 126, res.stderr
    assert "cannot execute" in res.stderr and "Traceback" not in res.stderr
    (row,) = forwarder_rows(db)
    assert row["Properties"]["command_outcome"] == "cannot-execute"
    assert summary(s)["command_outcome"] == "cannot-execute"


@pytest.mark.parametrize("where", ["directory", "under-a-file"])
def test_unusable_workspace_is_73(tmp_path: Path, where: str) -> None:
    log = tmp_path / "run.log"
    log.write_text("hello\n")
    if where == "directory":
        db = tmp_path / "ws-dir"
        db.mkdir()
    else:
        (tmp_path / "plain").write_text("x")
        db = tmp_path / "plain" / "ws.db"  # its folder cannot be created
    s = tmp_path / "s.json"
    res = run_forward(["--db", str(db), "--summary-json", str(s), str(log)], tmp_path)
    assert res.returncode == 73, res.stderr
    assert "local workspace" in res.stderr and "Traceback" not in res.stderr
    data = summary(s)
    assert data["delivery"] == {
        "complete": False,
        "status": 73,
        "undelivered": 0,
        "where_kept": [],
    }

    # Wrap mode: the command is not started when its logs could go nowhere.
    marker = tmp_path / "ran"
    res = run_forward(
        ["--db", str(db), "--summary-json", str(s), "--", "touch", str(marker)], tmp_path
    )
    assert res.returncode == 73 and not marker.exists()
    data = summary(s)
    assert data["mode"] == "wrap" and data["command_status"] is None


def _script(tmp_path: Path, status: int) -> list[str]:
    script = tmp_path / "agent.py"
    script.write_text(f"import sys\nprint('working')\nsys.exit({status})\n")
    return [sys.executable, str(script)]


@pytest.mark.parametrize(("policy", "expected"), [("auto", 75), ("command", 75), ("delivery", 0)])
def test_a_command_that_exits_75_is_not_undelivered_data(
    tmp_path: Path, policy: str, expected: int
) -> None:
    db, s = tmp_path / "ws.db", tmp_path / "s.json"
    args = ["--db", str(db), "--summary-json", str(s), "--exit-status", policy]
    res = run_forward([*args, "--", *_script(tmp_path, 75)], tmp_path)
    assert res.returncode == expected, res.stderr
    data = summary(s)
    assert data["command_status"] == 75 and data["delivery"]["complete"] is True
    assert data["delivery"]["status"] == 0 and data["exit_status_policy"] == policy


@pytest.mark.parametrize(("policy", "expected"), [("auto", 75), ("command", 3), ("delivery", 75)])
def test_exit_status_policy_when_delivery_fails(tmp_path: Path, policy: str, expected: int) -> None:
    s = tmp_path / "s.json"
    with started_emulator(tmp_path, forbidden=True) as emu:
        env = {**emu.env(), "HAL_LOGGING_AZURE_BACKOFF": "0.02,0.2"}
        res = run_forward(
            ["--summary-json", str(s), "--exit-status", policy, "--", *_script(tmp_path, 3)],
            tmp_path,
            env,
        )
    assert res.returncode == expected, res.stderr
    data = summary(s)
    assert data["command_status"] == 3 and data["command_outcome"] == "exited"
    assert data["delivery"]["complete"] is False and data["delivery"]["status"] == 75
    assert data["delivery"]["undelivered"] >= 2  # the print and the forwarder's row
    assert any("--resend" in w for w in data["delivery"]["where_kept"])


def test_exit_status_flag_is_for_wrap_mode(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("x\n")
    res = run_forward(["--exit-status", "command", str(log)], tmp_path)
    assert res.returncode == 2 and "wrap mode" in res.stderr


def test_summaries_of_every_mode_match_the_schema(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)))
    db = tmp_path / "ws.db"
    for i, args in enumerate(
        (
            ["--db", str(db), str(log)],
            ["--db", str(db), str(log)],  # resumed at the end
            ["--dry-run", str(log)],
            ["--sink", "jsonl", "--output", str(tmp_path / "o.jsonl"), str(log)],
            ["--db", str(db), "--", *_script(tmp_path, 0)],
        )
    ):
        s = tmp_path / f"s{i}.json"
        res = run_forward(["--summary-json", str(s), *args], tmp_path)
        assert res.returncode == 0, res.stderr
        summary(s)


def test_schema_is_in_the_package() -> None:
    assert resources.files("hal_logging").joinpath("summary.schema.json").is_file()
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
