"""Acceptance: the whole forwarder, real SDK and credential, over TLS, against a misbehaving stand-in.

The forwarder runs as a subprocess exactly as on a VM (``hal-logging-forward
FILE`` with the ``AZURE_MONITOR_*`` environment), takes its token from the
stand-in's IMDS through the real ``ManagedIdentityCredential``, and is killed
and restarted mid-run while every fault kind is injected and the service
itself restarts. Afterwards the stand-in's workspace must hold every input
record; duplicates only where the forwarder could not know the outcome; no
request over either limit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hal_logging import _json, schema
from hal_logging.emulator import MAX_REQUEST_BYTES, REJECT_MARKER, Emulator, FaultPlan
from hal_logging.emulator.faults import TRANSIENT_KINDS
from tests.azure_helpers import client_env, started_emulator
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

ALL_FAULTS = TRANSIENT_KINDS


def _now(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat().replace("+00:00", "Z")


def wire_line(
    token: str, message: str | None = None, time_text: str | None = None, **props: Any
) -> bytes:
    row = schema.empty_row()
    row.update(
        TimeGenerated=time_text or _now(),
        Level="INFO",
        Message=message if message is not None else f"{token} agent step",
        LoggerName="agent",
        LogType="AgentLog",
    )
    row["Properties"] = {"seq": token, **props}
    return schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n"


def write_input(path: Path, n: int) -> set[str]:
    """n records: wire lines, raw text, a 100 KB line, huge Properties, an old time. Returns tokens."""
    tokens: set[str] = set()
    with open(path, "wb") as fh:
        for i in range(n):
            token = f"T{i:06d}"
            tokens.add(token)
            if i % 10 == 3:
                fh.write(f"{token} plain text from print() {'z' * (i % 97)}\n".encode())
            elif i == 5:
                fh.write(wire_line(token, message=f"{token} " + "m" * 100_000))
            elif i == 7:
                fh.write(wire_line(token, **{f"blob{k}": "b" * 30_000 for k in range(8)}))
            elif i == 9:
                fh.write(wire_line(token, time_text="2001-01-01T00:00:00.000001Z"))
            else:
                fh.write(wire_line(token, payload="p" * (i % 300)))
    return tokens


def forward_cmd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hal_logging.cli.forward",
        "--run-id",
        "R1",
        "--task-id",
        "T1",
        *args,
    ]


def run_env(emu: Emulator) -> dict[str, str]:
    env = client_env(emu.env())
    env["HAL_LOGGING_AZURE_BACKOFF"] = "0.02,0.2"
    return env


def token_of(row: dict[str, Any]) -> str | None:
    props = row.get("Properties")
    if isinstance(props, dict) and isinstance(props.get("seq"), str):
        return str(props["seq"])
    message = row.get("Message") or ""
    return message[:7] if message.startswith("T") else None


def check_limits(emu: Emulator) -> None:
    requests = emu.workspace.requests()
    assert requests, "no request reached the stand-in"
    assert max(r["compressed_bytes"] for r in requests) <= MAX_REQUEST_BYTES
    assert max(r["uncompressed_bytes"] for r in requests) <= MAX_REQUEST_BYTES
    assert emu.stats()["over_limit_requests"] == 0


def test_faults_kill_and_restart_lose_nothing(tmp_path: Path) -> None:
    n = 6000
    log = tmp_path / "run.log"
    tokens = write_input(log, n)
    script: list[str] = []
    for kind in ALL_FAULTS:  # every kind at least once, early, then at random
        script += [kind, "ok"]
    faults = FaultPlan(
        rates={
            "429": 0.04,
            "503": 0.04,
            "500": 0.03,
            "cut": 0.03,
            "stored-500": 0.03,
            "stored-cut": 0.03,
            "slow": 0.02,
        },
        seed=11,
        retry_after=0.05,
        slow_seconds=0.2,
        script=deque(script),
    )
    summary = tmp_path / "summary.json"
    with started_emulator(tmp_path, faults=faults) as emu:
        env = run_env(emu)
        cmd = forward_cmd("--batch-rows", "100", "--summary-json", str(summary), str(log))

        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(
            lambda: emu.stats()["rows_accepted"] >= n // 3 or first.poll() is not None,
            what="progress",
        )
        assert first.poll() is None, "the first run finished before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.time()

        second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(
            lambda: emu.stats()["rows_accepted"] >= (2 * n) // 3 or second.poll() is not None,
            what="more progress",
        )
        assert second.poll() is None, "the second run finished before the service restart"
        emu.restart()  # the service goes away and comes back on the same port
        restarted_at = time.time()  # requests before this went to the old server
        _out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err.decode(errors="replace")

        check_limits(emu)
        stats = emu.stats()
        plan = emu.workspace.requests()
        seen_faults = {r["fault"] for r in plan if r["fault"]}
        assert seen_faults >= set(ALL_FAULTS), (
            f"not every fault kind was injected: {set(ALL_FAULTS) - seen_faults}"
        )

        rows = emu.workspace.rows()
        stored_tokens = {token_of(r) for r in rows}
        assert tokens <= stored_tokens, f"lost: {sorted(tokens - stored_tokens)[:10]}"

        # Duplicates: same record id, same content; only where the outcome was unknown.
        by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_id[row["Properties"]["hal"]["record_id"]].append(row)
        assert len(by_id) == n  # one record id per input record
        for copies in by_id.values():
            assert all(
                token_of(c) == token_of(copies[0]) and c["Message"] == copies[0]["Message"]
                for c in copies
            )
        confirmed: dict[tuple[int, str], int] = defaultdict(int)
        copies_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for record_id, _key, when, status, _fault in emu.workspace.copies():
            assert record_id is not None
            # Epochs: first process | second process | after the service restart (which cut
            # open connections, so answers in flight were lost: unknown outcomes too).
            epoch = 1 if when < killed_at else 2 if when < restarted_at else 3
            copies_of[record_id].append((epoch, status))
            if status == 204:
                confirmed[(epoch, record_id)] += 1
        bad = {k: v for k, v in confirmed.items() if v > 1}
        if bad:
            rid = next(iter(bad))[1]
            detail = [
                (round(w - restarted_at, 3), st, f)
                for r, _k, w, st, f in emu.workspace.copies()
                if r == rid
            ]
            raise AssertionError(
                f"a process re-sent rows it had seen confirmed: {len(bad)} {detail} kill {killed_at - restarted_at}"
            )
        duplicated = {rid: c for rid, c in copies_of.items() if len(c) > 1}
        assert duplicated, "stored-then-failed faults should have produced duplicates"
        print(
            f"{len(plan)} requests, {len(duplicated)} duplicated records, faults {stats['faults']}"
        )
        for rid, copies in duplicated.items():
            unknown = any(status != 204 for _, status in copies) or len({e for e, _ in copies}) > 1
            assert unknown, f"{rid} duplicated without an unknown outcome: {copies}"

        # The special rows arrived intact in the ways the service needs.
        special = {token_of(r): r for r in rows}
        assert len(special["T000005"]["Message"].encode()) <= schema.MAX_FIELD_BYTES
        assert len(_json.dumps(special["T000007"]["Properties"])) <= schema.MAX_FIELD_BYTES
        assert special["T000009"]["Properties"]["hal"]["original_time"].startswith("2001-01-01")
        assert (
            stats["time_replaced"] == 0
            and stats["fields_over_64kb"] == 0
            and stats["undeclared_columns"] == {}
        )
    report = _json.loads(summary.read_bytes())
    assert report["undelivered"] == 0 and report["dead_lettered"] == 0


def test_refused_rows_go_to_dead_letter_and_can_be_sent_again(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        for i in range(300):
            fh.write(
                wire_line(
                    f"T{i:06d}", message=f"T{i:06d} {REJECT_MARKER}" if i in (10, 250) else None
                )
            )
    dead = tmp_path / "refused.jsonl"
    with started_emulator(tmp_path) as emu:
        env = run_env(emu)
        first = subprocess.run(
            forward_cmd("--dead-letter", str(dead), str(log)),
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert first.returncode != 0  # not everything was delivered, and it says where the rest is
        assert str(dead) in first.stderr.decode()
        assert emu.workspace.count() == 298
        lines = dead.read_bytes().splitlines()
        assert len(lines) == 2 and all(line.startswith(schema.WIRE_PREFIX) for line in lines)
        assert _json.loads(lines[0])["Properties"]["hal"]["dead_letter"]["status"] == 400

        emu.config.reject_marker = None  # the cause is fixed (e.g. the DCR updated)
        again = subprocess.run(forward_cmd(str(dead)), env=env, capture_output=True, timeout=60)
        assert again.returncode == 0, again.stderr.decode(errors="replace")
        stored = {token_of(r) for r in emu.workspace.rows()}
        assert {f"T{i:06d}" for i in range(300)} <= stored
        check_limits(emu)


def test_missing_role_stops_keeps_everything_then_resumes(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        for i in range(500):
            fh.write(wire_line(f"T{i:06d}"))
    with started_emulator(tmp_path, forbidden=True) as emu:
        env = run_env(emu)
        denied = subprocess.run(forward_cmd(str(log)), env=env, capture_output=True, timeout=60)
        assert denied.returncode != 0
        err = denied.stderr.decode()
        assert "Monitoring Metrics Publisher" in err and "30 minutes" in err
        assert emu.workspace.count() == 0

        emu.config.forbidden = False  # the role assignment has propagated
        ok = subprocess.run(forward_cmd(str(log)), env=env, capture_output=True, timeout=60)
        assert ok.returncode == 0, ok.stderr.decode(errors="replace")
        ids = emu.workspace.record_ids()
        assert len(ids) == len(set(ids)) == 500  # nothing was half-sent before


def test_wrap_mode_spools_prepared_rows_whole_then_resends(tmp_path: Path) -> None:
    """Rows already serialised by AzureSink.prepare (their dicts released) still spool whole."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from tests.test_azure_forward import wire_line\n"
        "for i in range(400):\n"
        "    sys.stdout.buffer.write(wire_line(f'T{i:06d}', payload='p' * (i % 50)))\n"
    )
    with started_emulator(tmp_path, forbidden=True) as emu:
        env = run_env(emu)
        denied = subprocess.run(
            forward_cmd("--batch-rows", "20", "--", sys.executable, str(script)),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        assert denied.returncode != 0
        assert emu.workspace.count() == 0
        spools = list(tmp_path.glob("hal-forward-undelivered-*.jsonl"))
        assert len(spools) == 1, denied.stderr.decode(errors="replace")
        lines = spools[0].read_bytes().splitlines()
        assert all(line.startswith(schema.WIRE_PREFIX) for line in lines)
        rows = [_json.loads(line) for line in lines]
        agent = [r for r in rows if r["LogType"] == "AgentLog"]
        # Besides the agent's rows, only the forwarder's own (the "command finished" row).
        assert all(r["LogType"] == "VMOperation" for r in rows if r not in agent)
        assert sorted(r["Properties"]["seq"] for r in agent) == [f"T{i:06d}" for i in range(400)]
        for r in agent:
            i = int(r["Properties"]["seq"][1:])
            assert r["Message"] == f"T{i:06d} agent step"
            assert r["Properties"]["payload"] == "p" * (i % 50)
            assert r["RunID"] == "R1" and r["Properties"]["hal"]["record_id"]

        emu.config.forbidden = False
        ok = subprocess.run(
            forward_cmd("--resend", str(spools[0])), env=env, capture_output=True, timeout=60
        )
        assert ok.returncode == 0, ok.stderr.decode(errors="replace")
        ids = emu.workspace.record_ids()
        assert len(ids) == len(set(ids)) == len(rows)
        assert set(ids) == {r["Properties"]["hal"]["record_id"] for r in rows}
