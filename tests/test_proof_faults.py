"""The fault suite (issue 8): the real forwarder against the stand-in while things go wrong.

Every scenario ships the same log (wire lines, text, a traceback, a progress
bar) with the real CLI and the real Azure SDK over TLS, then proves from the
stand-in's store, not from the forwarder's word:

- **zero records lost**: every record id a clean local run produces is stored;
- **nothing invented**: no stored record id outside that set;
- **duplicates only from unknown outcomes**: at most as many duplicate rows as
  the stand-in stored in requests it did not answer 204 (``stored-500``,
  ``stored-cut``, a killed forwarder's last batches), each a copy of the same
  row, so ``arg_max(...) by record_id`` removes them;
- **no request over 1,048,576 bytes** compressed or not;
- **exit status and ``--summary-json`` true to what happened**.

Fixtures for the stand-in come from ``tests/azure_helpers.py`` (azure owner).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import resource
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hal_logging.emulator.faults import TRANSIENT_KINDS
from tests.azure_helpers import EmulatorProcess, client_env, request_sizes, started_emulator
from tests.forward_helpers import reaped
from tests.proof_helpers import (
    FORWARD,
    TRUST_ARGS,
    db_rows,
    forward,
    jsonl_rows,
    record_id,
    rows_problems,
    text_of,
    tool_tracebacks,
)
from tests.waiting import wait_for

LIMIT = 1_048_576
N_WIRE = 1500
#: Small batches: many requests per run, so a fault rate hits several of them.
BATCH = ["--batch-rows", "100"]


# ---------------------------------------------------------------------------------------------
# The log every scenario ships, and what a clean run makes of it
# ---------------------------------------------------------------------------------------------


def _log_bytes(n_wire: int = N_WIRE) -> bytes:
    out = bytearray()
    for j in range(n_wire):
        out += (
            b'{"_hal":1,"TimeGenerated":"2024-05-01T12:00:00.%06dZ","Level":"INFO","Message":"wire seq#%d",'
            b'"LoggerName":"agent","RunID":"claimed","Properties":{"seq":%d,"pad":"%s"}}\n'
            % (j, j, j, b"p" * (j % 300))
        )
        if j % 100 == 50:
            out += b"plain text line seq#t%d\n" % j
        if j % 500 == 250:
            out += (
                b"Traceback (most recent call last):\n"
                b'  File "/app/a.py", line 1, in <module>\n'
                b"ValueError: seq#e%d\n" % j
            )
            out += b"\rdl  10%%\rdl  50%%\rdl 100%% seq#p%d\n" % j
    return bytes(out)


@dataclass(frozen=True)
class Reference:
    """A log file and what a clean run makes of it (ids are stable per file identity)."""

    path: Path
    ids: frozenset[str]
    by_id: dict[str, tuple[str, str]]  # record id -> (Level, Message)


def _reference(path: Path, work: Path) -> Reference:
    out = work / "reference.jsonl"
    proc = forward(
        [*TRUST_ARGS, "--sink", "jsonl", "--output", str(out), "--no-checkpoint", str(path)],
        cwd=work,
    )
    assert proc.returncode == 0 and not tool_tracebacks(proc.stderr), proc.stderr
    rows = jsonl_rows(out)
    assert not rows_problems(rows)
    by_id = {record_id(r): (r["Level"], r["Message"]) for r in rows}
    assert len(by_id) == len(rows)
    return Reference(path, frozenset(by_id), by_id)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    work = tmp_path_factory.mktemp("fault-log")
    path = work / "container.log"
    path.write_bytes(_log_bytes())
    return _reference(path, work)


# ---------------------------------------------------------------------------------------------
# Running the forwarder against the stand-in and judging the result
# ---------------------------------------------------------------------------------------------


def _env(emu_env: dict[str, str]) -> dict[str, str]:
    """The stand-in's client environment, with the forwarder's retry backoff shortened
    (0.05 s doubling to 0.5 s instead of 0.5 s to 30 s) so outages cost seconds, not minutes."""
    env = client_env(emu_env)
    env["HAL_LOGGING_AZURE_BACKOFF"] = "0.05,0.5"
    return env


def _azure_args(tmp: Path, tag: str) -> list[str]:
    return [
        *TRUST_ARGS,
        *BATCH,
        "--checkpoint",
        str(tmp / f"{tag}.ckpt"),
        "--summary-json",
        str(tmp / f"{tag}.summary.json"),
        "--dead-letter",
        str(tmp / f"{tag}.dead.jsonl"),
        "--drain-timeout",
        "60",
    ]


def _run(
    emu_env: dict[str, str], tmp: Path, tag: str, ref: Reference, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = forward(
        [*_azure_args(tmp, tag), *extra, str(ref.path)], cwd=tmp, env=_env(emu_env), timeout=150
    )
    assert not tool_tracebacks(proc.stderr), (
        f"{tag}: the forwarder printed a traceback:\n{proc.stderr[-4000:]}"
    )
    summary_path = tmp / f"{tag}.summary.json"
    assert summary_path.exists(), f"{tag}: no --summary-json written\n{proc.stderr[-2000:]}"
    return proc, json.loads(summary_path.read_text())


@dataclass
class Verdict:
    stored: int
    distinct: int
    duplicates: int
    lost: int
    unknown_outcome_rows: int


def _judge(db: Path, ref: Reference, *, extra_unknown: int = 0) -> Verdict:
    """The store against the reference: lost, invented, duplicates and sizes."""
    rows = db_rows(db)
    ids = Counter(record_id(r) for r in rows)
    lost = ref.ids - set(ids)
    invented = set(ids) - ref.ids
    assert not lost, f"{len(lost)} records lost, e.g. {[ref.by_id[i] for i in sorted(lost)[:5]]}"
    assert not invented, (
        f"{len(invented)} stored record ids that the log does not produce: {sorted(invented)[:5]}"
    )
    problems = rows_problems([r for r in {record_id(r): r for r in rows}.values()])
    assert not problems, problems[:10]
    for r in rows:  # a duplicate is a copy: removable by record id without losing anything
        assert (r["Level"], r["Message"]) == ref.by_id[record_id(r)]
    sizes = request_sizes(db)
    over = [s for s in sizes if s[1] > LIMIT or s[2] > LIMIT]
    assert not over, f"requests over the 1,048,576-byte limit: {over[:5]}"
    con_rows = _unknown_outcome_rows(db)
    dupes = len(rows) - len(ids)
    bound = con_rows + extra_unknown
    assert dupes <= bound, f"{dupes} duplicate rows but only {bound} rows had an unknown outcome"
    return Verdict(len(rows), len(ids), dupes, len(lost), con_rows)


def _unknown_outcome_rows(db: Path) -> int:
    """Rows the stand-in stored in requests the client never saw succeed."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as con:
        (n,) = con.execute(
            'SELECT COALESCE(SUM("rows"), 0) FROM "_emulator_requests" WHERE "stored" = 1 AND "status" != 204'
        ).fetchone()
    return int(n)


def _assert_summary_complete(
    proc: subprocess.CompletedProcess[str], summary: dict[str, Any], ref: Reference, tag: str
) -> None:
    assert proc.returncode == 0, f"{tag}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert summary["exit_status"] == 0
    assert summary["undelivered"] == 0 and summary["dead_lettered"] == 0, summary
    assert summary["rows"] == len(ref.ids), summary
    assert summary["delivered"] == len(ref.ids), summary


# ---------------------------------------------------------------------------------------------
# Each fault kind alone, then all mixed
# ---------------------------------------------------------------------------------------------

TRANSIENT = TRANSIENT_KINDS


@pytest.mark.parametrize("kind", TRANSIENT)
def test_each_transient_fault_alone(kind: str, reference: Reference, tmp_path: Path) -> None:
    """One fault kind on about a third of the requests: everything arrives, exit 0."""
    faults = {"rates": {kind: 0.35}, "seed": 8, "retry_after": 0.2, "slow_seconds": 0.5}
    with started_emulator(tmp_path, faults=faults) as emu:
        proc, summary = _run(emu.env(), tmp_path, kind, reference)
        stats = emu.stats()
    assert stats["faults"].get(kind, 0) > 0, f"the fault {kind} never fired: {stats}"
    _assert_summary_complete(proc, summary, reference, kind)
    verdict = _judge(tmp_path / "emu.db", reference)
    if not kind.startswith("stored-"):
        assert verdict.duplicates == 0, (
            f"{kind} stores nothing before failing, yet {verdict.duplicates} duplicates"
        )


def test_all_faults_mixed(reference: Reference, tmp_path: Path) -> None:
    rates = {k: 0.06 for k in TRANSIENT}
    with started_emulator(
        tmp_path, faults={"rates": rates, "seed": 3, "retry_after": 0.2, "slow_seconds": 0.5}
    ) as emu:
        proc, summary = _run(emu.env(), tmp_path, "mixed", reference)
        stats = emu.stats()
    assert len(stats["faults"]) >= 4, stats["faults"]
    _assert_summary_complete(proc, summary, reference, "mixed")
    _judge(tmp_path / "emu.db", reference)


def test_outage_longer_than_a_retry_then_recovery(reference: Reference, tmp_path: Path) -> None:
    """A scripted burst: 12 consecutive failures of different kinds, then the service is back."""
    script = [
        "503",
        "cut",
        "429",
        "500",
        "502",
        "504",
        "408",
        "cut",
        "503",
        "429-no-retry-after",
        "500",
        "cut",
    ]
    with started_emulator(tmp_path, faults={"script": script, "retry_after": 0.1}) as emu:
        proc, summary = _run(emu.env(), tmp_path, "burst", reference)
        stats = emu.stats()
    assert sum(stats["faults"].values()) == len(script)
    _assert_summary_complete(proc, summary, reference, "burst")
    assert _judge(tmp_path / "emu.db", reference).duplicates == 0


# ---------------------------------------------------------------------------------------------
# Fatal answers: stop, keep everything, say what to check; a later run delivers it all
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("401", "token"), ("403", "Monitoring Metrics Publisher"), ("404", "rule")],
)
def test_fatal_answer_keeps_everything_for_a_later_run(
    kind: str, hint: str, reference: Reference, tmp_path: Path
) -> None:
    with started_emulator(tmp_path, faults={"down": kind}) as emu:
        proc, summary = _run(emu.env(), tmp_path, "fatal", reference)
        assert proc.returncode != 0, f"{kind}: exit 0 although nothing was delivered"
        assert hint.lower() in proc.stderr.lower(), (
            f"{kind}: stderr does not say what to check ({hint!r}):\n{proc.stderr}"
        )
        assert summary["exit_status"] == proc.returncode
        assert summary["delivered"] == 0
        assert summary["undelivered"] + summary["dead_lettered"] >= 1, summary
        assert db_rows(tmp_path / "emu.db") == []
        emu.set_faults(down=None)
        proc2, summary2 = _run(emu.env(), tmp_path, "fatal", reference)
    _assert_summary_complete(proc2, summary2, reference, f"{kind} then fixed")
    assert _judge(tmp_path / "emu.db", reference).duplicates == 0


# ---------------------------------------------------------------------------------------------
# The service restarted, the token expiring, while the forwarder follows a growing file
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _following(
    emu_env: dict[str, str], tmp: Path, log: Path, tag: str, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    err = tmp / f"{tag}.stderr"
    with err.open("wb") as fh:
        proc = subprocess.Popen(
            [
                *FORWARD,
                *_azure_args(tmp, tag),
                "--follow",
                "--flush-interval",
                "0.2",
                *extra,
                str(log),
            ],
            cwd=tmp,
            env=_env(emu_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    try:
        with reaped(proc):
            yield proc
    finally:
        assert not tool_tracebacks(text_of(err)), text_of(err)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=90)


def test_emulator_killed_and_restarted_mid_run(tmp_path: Path) -> None:
    """The service process dies (SIGKILL) mid-run and comes back on the same port: nothing lost."""
    data = _log_bytes(2400)
    half = data.index(b"\n", len(data) // 2) + 1
    log = tmp_path / "container.log"
    log.write_bytes(data[:half])
    emu = EmulatorProcess(
        tmp_path, "--retry-after", "0.2", "--fault", "slow=0.5", "--slow", "0.5"
    ).start()
    try:
        with _following(emu.env, tmp_path, log, "restart") as fwd:
            wait_for(lambda: len(db_rows(emu.db)) >= 200, timeout=60, what="the first rows")
            emu.stop(signal.SIGKILL)
            with log.open("ab") as f:
                f.write(data[half:])
            # the scenario: the service stays down for 2 s while new lines keep coming
            down_until = time.monotonic() + 2.0
            wait_for(
                lambda: time.monotonic() > down_until, timeout=10, what="the outage to last 2 s"
            )
            assert fwd.poll() is None, "the forwarder gave up during a 2 s outage"
            emu.start()
            wait_for(
                lambda: _distinct(emu.db) >= _expected_rows(data),
                timeout=90,
                what="every row after the restart",
            )
            status = _stop(fwd)
    finally:
        emu.stop()
    summary = json.loads((tmp_path / "restart.summary.json").read_text())
    assert status == 0, text_of(tmp_path / "restart.stderr")
    assert summary["undelivered"] == 0 and summary["exit_status"] == 0
    ref = _reference(log, tmp_path)
    # a killed service may have stored a request it never answered: that is an unknown outcome
    _judge(emu.db, ref, extra_unknown=_max_batch_rows_in_flight())


def test_token_expires_mid_run(tmp_path: Path) -> None:
    """Tokens valid for 2 s while a follow run lasts longer: renewed, nothing refused for good."""
    data = _log_bytes(1200)
    log = tmp_path / "container.log"
    log.write_bytes(b"")
    with started_emulator(tmp_path, token_lifetime=2) as emu:
        with _following(emu.env(), tmp_path, log, "token") as fwd:
            step = len(data) // 6
            pos = 0
            for k in range(
                6
            ):  # six appends, each after the previous ones arrived, spread over > 2 s
                end = len(data) if k == 5 else data.index(b"\n", pos + step) + 1
                with log.open("ab") as f:
                    f.write(data[pos:end])
                pos = end
                target = data[:pos].count(b"seq#")
                wait_for(
                    functools.partial(_seq_count_at_least, tmp_path / "emu.db", target),
                    timeout=60,
                    what=f"append {k}",
                )
                if k < 5:  # let a quarter of the token's lifetime pass between appends
                    wait_for(
                        functools.partial(_past, time.monotonic() + 0.5), timeout=5, what="0.5 s"
                    )
            status = _stop(fwd)
        stats = emu.stats()
    assert status == 0, text_of(tmp_path / "token.stderr")
    assert stats["token_requests"] >= 2, f"the token was never renewed: {stats}"
    # renewed before use: the service never saw an expired (or any bad) token
    assert stats["auth_failures"] == {}, stats["auth_failures"]
    ref = _reference(log, tmp_path)
    _judge(tmp_path / "emu.db", ref)


def _seq_count_at_least(db: Path, target: int) -> bool:
    return _seq_count(db) >= target


def _past(deadline: float) -> bool:
    return time.monotonic() > deadline


def _reached_or_exited(db: Path, threshold: int, proc: subprocess.Popen[bytes]) -> bool:
    return _distinct(db) >= threshold or proc.poll() is not None


def _distinct(db: Path) -> int:
    """Distinct record ids stored so far (a cheap query: it is polled)."""
    import sqlite3

    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        try:
            (n,) = con.execute(
                'SELECT COUNT(DISTINCT "_record_id") FROM "BenchmarkRuns_CL"'
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(n)


def _seq_count(db: Path) -> int:
    return len({record_id(r) for r in db_rows(db) if "seq#" in r["Message"]})


def _expected_rows(data: bytes) -> int:
    return data.count(b"seq#")


def _max_batch_rows_in_flight() -> int:
    return 4 * 100


# ---------------------------------------------------------------------------------------------
# The checkpoint cannot be written
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs at ``where``; the test is skipped where mounting is not allowed."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)), "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _full_dir(tmp: Path) -> contextlib.AbstractContextManager[Path]:
    """A directory on a full filesystem (ENOSPC for root too)."""

    @contextlib.contextmanager
    def full() -> Iterator[Path]:
        with _tmpfs(tmp / "full") as d:
            with contextlib.suppress(OSError), (d / "filler").open("wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            yield d

    return full()


CHECKPOINT_TRAPS = ["parent-is-a-file", "disk-full", "read-only-fs"]


@pytest.mark.parametrize("trap", CHECKPOINT_TRAPS)
def test_checkpoint_cannot_be_written(trap: str, reference: Reference, tmp_path: Path) -> None:
    """Rows go out but progress cannot be saved: no loss, exit non-zero, stderr names the checkpoint.

    Root ignores permission bits, so the traps are ones root cannot bypass: a
    checkpoint whose parent is a regular file (ENOTDIR), a full tmpfs (ENOSPC),
    a read-only tmpfs (EROFS). The last two need mount rights and are skipped
    without them.
    """
    with contextlib.ExitStack() as stack:
        if trap == "parent-is-a-file":
            blocker = tmp_path / "not-a-dir"
            blocker.write_text("x")
            ckpt = blocker / "ckpt"
        else:
            d = stack.enter_context(
                _full_dir(tmp_path) if trap == "disk-full" else _tmpfs(tmp_path / "ro", "ro")
            )
            ckpt = d / "ckpt"
        emu = stack.enter_context(started_emulator(tmp_path))
        summary_path = tmp_path / "ck.summary.json"
        proc = forward(
            [
                *TRUST_ARGS,
                *BATCH,
                "--checkpoint",
                str(ckpt),
                "--summary-json",
                str(summary_path),
                "--dead-letter",
                str(tmp_path / "dead.jsonl"),
                str(reference.path),
            ],
            cwd=tmp_path,
            env=_env(emu.env()),
            timeout=120,
        )
    assert not tool_tracebacks(proc.stderr), proc.stderr[-4000:]
    assert proc.returncode != 0, (
        f"{trap}: exit 0 although the checkpoint {ckpt} could not be written"
    )
    assert "checkpoint" in proc.stderr.lower() and str(ckpt.parent.name) in proc.stderr, (
        proc.stderr[-3000:]
    )
    rows = db_rows(tmp_path / "emu.db")
    delivered = {record_id(r) for r in rows}
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        assert summary["exit_status"] == proc.returncode
        assert summary["delivered"] == len(delivered)
    # whatever was not delivered is still in the input, which a rerun with a usable checkpoint ships
    if len(delivered) < len(reference.ids):
        with started_emulator(tmp_path, name="emu2") as emu2:
            proc2 = forward(
                [*TRUST_ARGS, "--checkpoint", str(tmp_path / "good.ckpt"), str(reference.path)],
                cwd=tmp_path,
                env=_env(emu2.env()),
                timeout=120,
            )
            assert proc2.returncode == 0, proc2.stderr
        assert delivered | {record_id(r) for r in db_rows(tmp_path / "emu2.db")} >= reference.ids


def test_checkpoint_disk_fills_mid_run(tmp_path: Path) -> None:
    """The checkpoint's filesystem fills up (ENOSPC) while following.

    (A read-only remount cannot be shown mid-run: the kernel refuses it while the
    forwarder holds its lock file open, EBUSY; read-only at start is tested above.)

    The forwarder cannot record progress any more, so it must stop by itself with a
    non-zero status naming the checkpoint (going on would make every later crash
    re-send everything); once the disk is usable a rerun delivers the rest: nothing
    lost, duplicates at most the rows sent after the failure.
    """
    data = _log_bytes(1500)
    half = data.index(b"\n", len(data) // 2) + 1
    log = tmp_path / "container.log"
    log.write_bytes(data[:half])
    with _tmpfs(tmp_path / "ckdir") as d, started_emulator(tmp_path) as emu:
        ckpt = d / "ckpt"
        with _following(emu.env(), tmp_path, log, "midrun", "--checkpoint", str(ckpt)) as fwd:
            first = data[:half].count(b"seq#")
            wait_for(
                lambda: ckpt.exists() and _distinct(tmp_path / "emu.db") >= first,
                timeout=60,
                what="the first half delivered and checkpointed",
            )
            with contextlib.suppress(OSError), (d / "filler").open("wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            with log.open("ab") as f:
                f.write(data[half:])
            try:
                status = fwd.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("the forwarder kept running although it cannot record progress")
        stderr = text_of(tmp_path / "midrun.stderr")
        assert status != 0, f"exit 0 although progress could not be saved\n{stderr}"
        assert str(ckpt) in stderr, f"stderr does not name the checkpoint:\n{stderr}"
        summary = json.loads((tmp_path / "midrun.summary.json").read_text())
        assert summary["exit_status"] == status
        (d / "filler").unlink()
        rerun = forward(
            [*_azure_args(tmp_path, "rerun"), "--checkpoint", str(ckpt), str(log)],
            cwd=tmp_path,
            env=_env(emu.env()),
            timeout=120,
        )
        assert rerun.returncode == 0, rerun.stderr
    ref = _reference(log, tmp_path)
    second = len(ref.ids) - first
    _judge(tmp_path / "emu.db", ref, extra_unknown=second + _max_batch_rows_in_flight())


# ---------------------------------------------------------------------------------------------
# SIGKILL at random points, repeated
# ---------------------------------------------------------------------------------------------


def test_sigkill_at_random_points_repeated(tmp_path: Path) -> None:
    """Kill the forwarder five times mid-delivery (with faults on), rerun to the end: nothing lost."""
    log = tmp_path / "container.log"
    log.write_bytes(_log_bytes(20000))
    ref = _reference(log, tmp_path)
    rng = random.Random(1234)
    total = len(ref.ids)
    kills = 0
    kill_times: list[float] = []
    faults = {
        "rates": {"503": 0.1, "stored-cut": 0.05, "slow": 0.2},
        "seed": 5,
        "retry_after": 0.1,
        "slow_seconds": 0.2,
    }
    with started_emulator(tmp_path, faults=faults) as emu:
        env = _env(emu.env())
        db = tmp_path / "emu.db"
        for k in range(5):
            floor = _distinct(db)
            threshold = min(total - 1, floor + rng.randrange(200, 2000))
            err = tmp_path / f"kill{k}.stderr"
            with err.open("wb") as fh:
                proc = subprocess.Popen(
                    [*FORWARD, *_azure_args(tmp_path, "kill"), str(log)],
                    cwd=tmp_path,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=fh,
                )
            try:
                wait_for(
                    functools.partial(_reached_or_exited, db, threshold, proc),
                    timeout=90,
                    what=f"kill point {k} ({threshold} rows)",
                )
                if proc.poll() is None:
                    kill_times.append(time.time())
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert not tool_tracebacks(text_of(err)), text_of(err)
        final, summary = _run(emu.env(), tmp_path, "kill", ref)
    assert final.returncode == 0, final.stderr
    assert summary["undelivered"] == 0 and summary["exit_status"] == 0
    assert kills >= 3, "the forwarder finished before it could be killed: make the log bigger"
    # A killed forwarder cannot record what was confirmed after its last checkpoint write
    # (written at most CHECKPOINT_INTERVAL = 1 s apart, plus the batches in flight): those
    # rows are unknown outcomes. Bound them by what the stand-in stored in the 3 s before each kill.
    unknown = sum(_rows_stored_between(tmp_path / "emu.db", t - KILL_WINDOW, t) for t in kill_times)
    verdict = _judge(tmp_path / "emu.db", ref, extra_unknown=unknown)
    assert verdict.distinct == total


#: Seconds before a SIGKILL whose confirmed rows a rerun may send again.
KILL_WINDOW = 3.0


def _rows_stored_between(db: Path, start: float, end: float) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as con:
        (n,) = con.execute(
            'SELECT COALESCE(SUM("rows"), 0) FROM "_emulator_requests" WHERE "stored" = 1 AND "status" = 204 '
            'AND "time" BETWEEN ? AND ?',
            (start, end),
        ).fetchone()
    return int(n)


def test_sigkill_while_writing_checkpoint_under_rlimit(
    reference: Reference, tmp_path: Path
) -> None:
    """A checkpoint write that fails half-way (file size limit: EFBIG, like a full disk for this
    process only) must never leave a checkpoint that skips undelivered rows."""
    ckpt = tmp_path / "ckpt"
    with started_emulator(tmp_path) as emu:

        def limit() -> None:  # the forwarder may write at most 64 bytes per file
            resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

        proc = subprocess.run(
            [*FORWARD, *TRUST_ARGS, *BATCH, "--checkpoint", str(ckpt), str(reference.path)],
            cwd=tmp_path,
            env=_env(emu.env()),
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=limit,
            check=False,
        )
        assert not tool_tracebacks(proc.stderr), proc.stderr[-4000:]
        assert proc.returncode != 0, "exit 0 although no checkpoint could be saved"
        proc2 = forward(
            [*TRUST_ARGS, "--checkpoint", str(ckpt), str(reference.path)],
            cwd=tmp_path,
            env=_env(emu.env()),
            timeout=120,
        )
        assert proc2.returncode == 0, proc2.stderr
    _judge(tmp_path / "emu.db", reference, extra_unknown=len(reference.ids))
