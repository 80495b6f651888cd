"""The forwarder's own rows cannot be faked by a container.

Logger names ``hal_logging``/``hal_logging.*`` and LogType ``VMOperation`` are
the VM side's: a container's row claiming them keeps the claim under
``Properties.hal.claimed`` and is stored as ``container:<name>`` / ``AgentLog``.
In wrap mode a wire line's time outside the command's lifetime is a claim too.
Checked through the real CLI and ``hal-logging query``, and at the parser for
both of its paths (the fast one for lines exactly as ``configure()`` writes
them, the careful one for the rest).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hal_logging import _json, schema
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.parsing import Parser
from tests.forward_helpers import ROOT, db_rows, run_cli, run_forward

pytestmark = pytest.mark.timeout(120)

AGENT = """\
import sys
from datetime import datetime, timedelta, timezone
sys.path.insert(0, {root!r})
from hal_logging import _json, schema

def iso(delta):
    t = datetime.now(timezone.utc) + timedelta(seconds=delta)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

def line(msg, logger="agent", log_type="AgentLog", delta=0.0, **extra):
    row = schema.empty_row()
    row.update(TimeGenerated=iso(delta), Level="INFO", Message=msg, LoggerName=logger,
               RunID="R1", TaskID="T1", LogType=log_type, Properties={{"k": 1}})
    body = schema.WIRE_PREFIX + _json.dumps(row)[1:]
    sys.stdout.buffer.write(body + b"\\n")

line("command agent finished: exit status 0 after 1.0s", "hal_logging.forward", "VMOperation")
line("fake on the fast path", "hal_logging.forward")
line("bare name", "hal_logging")
line("not reserved", "hal_logging_extra.tool")
line("early", delta=-60)
line("late", delta=3600)
line("normal")
sys.stdout.flush()
sys.exit(3)
"""


def _by_message(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["Message"]: r for r in rows}


def test_a_container_cannot_fake_the_forwarders_rows(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT.format(root=str(ROOT)))
    db = tmp_path / "ws.db"
    before = datetime.now(timezone.utc)
    res = run_forward(
        ["--db", str(db), "--run-id", "R1", "--task-id", "T1", "--", sys.executable, str(script)],
        tmp_path,
    )
    after = datetime.now(timezone.utc)
    assert res.returncode == 3, res.stderr
    rows = _by_message(db_rows(db))

    forged = rows["command agent finished: exit status 0 after 1.0s"]
    assert forged["LoggerName"] == "container:hal_logging.forward"
    assert forged["LogType"] == "AgentLog"
    assert forged["Properties"]["hal"]["claimed"] == {
        "LoggerName": "hal_logging.forward",
        "LogType": "VMOperation",
    }
    fast = rows["fake on the fast path"]
    assert fast["LoggerName"] == "container:hal_logging.forward"
    assert fast["Properties"]["hal"]["claimed"] == {"LoggerName": "hal_logging.forward"}
    assert rows["bare name"]["LoggerName"] == "container:hal_logging"
    assert rows["not reserved"]["LoggerName"] == "hal_logging_extra.tool"
    assert "claimed" not in rows["not reserved"]["Properties"]["hal"]

    # Times outside the command's lifetime: the claim kept, the read time used.
    lo = (before - timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    hi = (after + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for msg in ("early", "late"):
        row = rows[msg]
        claimed = row["Properties"]["hal"]["claimed"]["TimeGenerated"]
        assert not lo <= claimed <= hi
        assert lo <= row["TimeGenerated"] <= hi
    assert "claimed" not in rows["normal"]["Properties"]["hal"]

    # The real row is the only one a query for the forwarder's rows returns.
    q = run_cli("query", "--db", str(db), "--logger", "hal_logging.forward", "--json", cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    found = [_json.loads(line) for line in q.stdout.splitlines() if line.strip()]
    assert len(found) == 1, q.stdout
    assert found[0]["LogType"] == "VMOperation"
    assert "exit status 3" in found[0]["Message"]


def test_vm_operation_from_the_environment_is_not_lent_to_container_rows(tmp_path: Path) -> None:
    """HAL_LOG_TYPE=VMOperation (set for the VM side's own logs) does not make the
    container's lines VM operations; the forwarder's own row still is one."""
    db = tmp_path / "ws.db"
    res = run_forward(
        ["--db", str(db), "--", sys.executable, "-c", "print('from the agent')"],
        tmp_path,
        {"HAL_LOG_TYPE": "VMOperation"},
    )
    assert res.returncode == 0, res.stderr
    rows = db_rows(db)
    agent = [r for r in rows if r["Message"] == "from the agent"]
    assert [r["LogType"] for r in agent] == ["AgentLog"]
    own = [r for r in rows if r["LoggerName"] == "hal_logging.forward"]
    assert [r["LogType"] for r in own] == ["VMOperation"]


NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def _wire(msg: str, logger: str = "agent", time: str = "2024-05-01T12:00:00.500000Z") -> bytes:
    row = schema.empty_row()
    row.update(
        TimeGenerated=time,
        Level="INFO",
        Message=msg,
        LoggerName=logger,
        RunID="R1",
        LogType="AgentLog",
        Properties={"n": 1},
    )
    return schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n"


def _parse(data: bytes, *, fast: bool, not_before: float | None) -> list[Record]:
    parser = Parser(stream="stdout", source="s", trusted={"RunID": "R1"}, not_before=not_before)
    lines = Framer("stdout").feed(data, NOW + 1.0)
    if fast:
        return parser.feed_many(lines)
    out: list[Record] = []
    for line in lines:
        out.extend(parser._feed(line, False))  # the careful path only
    return out


@pytest.mark.parametrize("not_before", [NOW, None], ids=["wrap", "files"])
def test_fast_and_careful_paths_agree_on_claims(not_before: float | None) -> None:
    data = (
        _wire("ok")
        + _wire("forged", logger="hal_logging.forward")
        + _wire("just inside the skew", time="2024-05-01T11:59:58.500000Z")
        # Last: a read-timed row before others would take their time (the parser
        # keeps a chunk in order), which a line-by-line feed does not do.
        + _wire("too early", time="2024-05-01T11:59:00.000000Z")
        + _wire("too late", time="2024-05-01T13:00:00.000000Z")
    )
    fast = _parse(data, fast=True, not_before=not_before)
    careful = _parse(data, fast=False, not_before=not_before)
    assert [r.row for r in fast] == [r.row for r in careful]
    rows = {r.row["Message"]: r.row for r in fast}
    assert rows["forged"]["LoggerName"] == "container:hal_logging.forward"
    assert "claimed" not in rows["just inside the skew"]["Properties"]["hal"]
    if not_before is None:  # files have no lifetime: their times are left alone
        assert rows["too early"]["TimeGenerated"] == "2024-05-01T11:59:00.000000Z"
        assert "claimed" not in rows["too late"]["Properties"]["hal"]
    else:
        for msg in ("too early", "too late"):
            assert rows[msg]["TimeGenerated"] == "2024-05-01T12:00:01.000000Z"  # read time
            assert "TimeGenerated" in rows[msg]["Properties"]["hal"]["claimed"]
    # Ordinary lines still take the fast path with a lifetime set (Record.raw: its mark).
    assert next(r for r in fast if r.row["Message"] == "ok").raw is not None
