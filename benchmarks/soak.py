"""Soak run (issue 8, not in CI): follow mode for a long time against a chatty container.

What it does:

1. starts the Azure stand-in (``hal_logging.emulator``, HTTPS with its own CA,
   managed-identity tokens from its IMDS) in this process, its store in a file;
2. starts a *container simulator* (this script with ``--simulate``, a separate
   process) appending about ``--rate`` MB/s of mixed output to a log file: wire
   lines, coloured text, tracebacks, ``\\r`` progress bars, conda-list dumps,
   long lines. Every logical record carries a sequence number ``sim#N``;
3. runs the real forwarder (``python -m hal_logging.cli.forward --follow``) on
   that file, delivering to the stand-in with the real Azure SDK;
4. every ``--fault-every`` seconds injects the next fault of a cycle (503
   outage, 429 storm, connection cuts, stored-then-failed answers, an emulator
   restart, 5xx/408 mix, slow answers);
5. samples the forwarder's RSS and CPU every ``--sample-every`` seconds and the
   end-to-end latency of wire rows (written by the simulator -> visible in the
   store; polled every 0.25 s, so a latency is an upper bound with 0.25 s
   resolution) into ``soak.csv``, and plots ``soak.png``; "calm" latency leaves
   out rows seen during a fault or the 30 s after it;
6. at the end stops the writer, waits for the store to hold every ``sim#N``,
   stops the forwarder with SIGTERM and checks: nothing lost (every sequence
   number present), duplicates (rows sharing a record id: at most the rows whose
   outcome the client could not know, see ``unknown_outcome_rows``), the exit
   status and the summary.

Run: ``.venv/bin/python benchmarks/soak.py --minutes 20`` (results in
``benchmarks/results/``). ``--minutes 1`` for a smoke run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SIM_LOGGER = "soak.wire"
SEQ_RE = re.compile(r"sim#(\d+)")


# =============================================================================================
# The container simulator (a separate process: its CPU is not the forwarder's)
# =============================================================================================


class Chatter:
    """Output shaped like a HAL agent's: mostly wire lines, plus everything else agents print."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq = 0

    def _next(self) -> int:
        n = self.seq
        self.seq += 1
        return n

    def wire(self) -> bytes:
        n = self._next()
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        row = {
            "TimeGenerated": now,
            "Level": self.rng.choice(("INFO", "INFO", "INFO", "DEBUG", "WARNING")),
            "Message": f"step {n} tool call returned {self.rng.randrange(10**6)} tokens sim#{n}",
            "LoggerName": SIM_LOGGER,
            "RunID": "claimed-run",
            "TaskID": "claimed-task",
            "Properties": {
                "sim": n,
                "cost_usd": self.rng.random(),
                "model": "gpt-x",
                "step": n % 97,
            },
        }
        return b'{"_hal":1,' + json.dumps(row, separators=(",", ":")).encode()[1:] + b"\n"

    def text(self) -> bytes:
        n = self._next()
        kind = self.rng.randrange(4)
        if kind == 0:
            line = f"2024-05-01 12:00:00,123 - agent.core - INFO - thinking about subtask sim#{n}"
        elif kind == 1:
            line = f"\x1b[32mINFO\x1b[0m weave: 🍩 https://wandb.ai/x/y/r/call/{n:08x} sim#{n}"
        elif kind == 2:
            line = f"[WARNING] cost so far ${self.rng.random() * 3:.4f} sim#{n}"
        else:
            line = f"│ panel line {'─' * 40} sim#{n} │"
        return line.encode() + b"\n"

    def traceback(self) -> bytes:
        n = self._next()
        return (
            "Traceback (most recent call last):\n"
            '  File "/app/agent.py", line 42, in <module>\n'
            "    main()\n"
            '  File "/app/agent.py", line 40, in main\n'
            "    run_task(cfg)\n"
            "    ~~~~~~~~^^^^^\n"
            f"ValueError: tool failed sim#{n}\n"
        ).encode()

    def progress(self) -> bytes:
        n = self._next()
        states = "".join(
            f"\rdownloading model {p:3d}%|{'█' * (p // 4):25s}|" for p in range(0, 100, 3)
        )
        return (states + f"\rdownloading model 100% done sim#{n}\n").encode()

    def conda(self) -> bytes:
        n = self._next()
        pkgs = "".join(
            f"pkg{j:04d}                 1.{j}.0            py311_0    conda-forge\n"
            for j in range(60)
        )
        return f"# packages in environment at /opt/conda: sim#{n}\n".encode() + pkgs.encode()

    def long_line(self) -> bytes:
        n = self._next()
        return f"sim#{n} dump ".encode() + b"x" * self.rng.choice((20_000, 70_000, 150_000)) + b"\n"

    def chunk(self, target: int) -> bytes:
        out = bytearray()
        while len(out) < target:
            r = self.rng.random()
            if r < 0.80:
                out += self.wire()
            elif r < 0.95:
                out += self.text()
            elif r < 0.975:
                out += self.traceback()
            elif r < 0.99:
                out += self.progress()
            elif r < 0.998:
                out += self.conda()
            else:
                out += self.long_line()
        return bytes(out)


def simulate(path: Path, rate_mb: float, seconds: float, seed: int, count_out: Path) -> int:
    """Append ~rate_mb MB/s to ``path`` for ``seconds``; write the record count to ``count_out``."""
    chatter = Chatter(seed)
    tick = 0.05
    per_tick = int(rate_mb * 1_000_000 * tick)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    start = time.monotonic()
    written = 0
    with path.open("ab", buffering=0) as f:
        k = 0
        while not stop["now"] and time.monotonic() - start < seconds:
            k += 1
            due = per_tick * k - written  # a long line overshoots one tick; the next ones catch up
            if due > 0:
                data = chatter.chunk(due)
                f.write(data)
                written += len(data)
            delay = start + k * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    count_out.write_text(json.dumps({"records": chatter.seq, "bytes": written}))
    return 0


# =============================================================================================
# The driver
# =============================================================================================


@dataclass
class Fault:
    label: str
    duration: float
    changes: dict[str, Any] = field(default_factory=dict)
    restart: bool = False


FAULT_CYCLE: list[Fault] = [
    Fault("503 outage", 20, {"down": "503"}),
    Fault("429 storm", 30, {"rates": {"429": 0.3, "429-no-retry-after": 0.2}}),
    Fault("connection cuts", 15, {"down": "cut"}),
    Fault("stored-then-failed", 30, {"rates": {"stored-500": 0.15, "stored-cut": 0.15}}),
    Fault("emulator restart", 8, restart=True),
    Fault("5xx/408 mix", 30, {"rates": {"408": 0.1, "500": 0.1, "502": 0.1, "504": 0.1}}),
    Fault("slow answers", 30, {"rates": {"slow": 0.3}, "slow_seconds": 3.0}),
]
CLEAR: dict[str, Any] = {"down": None, "rates": {}, "clear_script": True}


class StorePoller:
    """Reads new rows of the stand-in's store: sequence numbers seen, latencies of wire rows."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.last_rowid = 0
        self.seen: set[int] = set()
        self.rows = 0
        self.lock = threading.Lock()
        self.poll_lock = threading.Lock()
        self.pending_lat: list[float] = []
        self.all_lat: list[tuple[float, float]] = []  # (seen at, latency)
        self._con: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._con is None and self.db.exists():
            self._con = sqlite3.connect(
                f"file:{self.db}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
        return self._con

    def poll(self) -> None:
        with self.poll_lock:
            self._poll()

    def _poll(self) -> None:
        con = self._connect()
        if con is None:
            return
        now = time.time()
        try:
            cur = con.execute(
                'SELECT rowid, TimeGenerated, Message, LoggerName, Properties FROM "BenchmarkRuns_CL" '
                "WHERE rowid > ? ORDER BY rowid",
                (self.last_rowid,),
            )
            batch = cur.fetchall()
        except sqlite3.OperationalError:
            return
        lats = []
        seen = set()
        for rowid, tg, msg, logger, props in batch:
            self.last_rowid = rowid
            for m in SEQ_RE.finditer(msg or ""):
                seen.add(int(m.group(1)))
            if props and "sim#" in props:
                for m in SEQ_RE.finditer(props):
                    seen.add(int(m.group(1)))
            if logger == SIM_LOGGER and tg:
                try:
                    t = datetime.fromisoformat(tg.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
                lats.append(now - t)
        with self.lock:
            self.rows += len(batch)
            self.seen |= seen
            self.pending_lat.extend(lats)
            self.all_lat.extend((now, lat) for lat in lats)

    def take_latencies(self) -> list[float]:
        with self.lock:
            out, self.pending_lat = self.pending_lat, []
            return out

    def unknown_outcome_rows(self, restarts: list[float]) -> int:
        """Rows the client cannot know were stored: stored by a request answered with an
        error or cut (stored-500/stored-cut), or answered 204 in the last 2 s before the
        stand-in was stopped (its connections are cut, so the answer may never arrive)."""
        con = self._connect()
        if con is None:
            return 0
        (n,) = con.execute(
            'SELECT COALESCE(SUM("rows"), 0) FROM "_emulator_requests" WHERE "stored" = 1 AND "status" != 204'
        ).fetchone()
        for t in restarts:
            (m,) = con.execute(
                'SELECT COALESCE(SUM("rows"), 0) FROM "_emulator_requests" WHERE "status" = 204 '
                'AND "time" BETWEEN ? AND ?',
                (t - 2.0, t),
            ).fetchone()
            n += m
        return int(n)

    def duplicates(self) -> tuple[int, int]:
        """(rows sharing a record id with an earlier row, distinct record ids)."""
        con = self._connect()
        if con is None:
            return 0, 0
        total, distinct = con.execute(
            'SELECT COUNT(*), COUNT(DISTINCT "_record_id") FROM "BenchmarkRuns_CL"'
        ).fetchone()
        return int(total) - int(distinct), int(distinct)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _faults(args: argparse.Namespace, t0: float) -> Iterator[tuple[float, Fault]]:
    """(start time, fault) for every fault of the run, cycling."""
    t = args.first_fault
    k = 0
    while t < args.minutes * 60 - 30:
        yield t0 + t, FAULT_CYCLE[k % len(FAULT_CYCLE)]
        t += args.fault_every
        k += 1


def run(args: argparse.Namespace) -> int:
    import psutil

    from hal_logging.emulator.server import Emulator

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hal-soak-"))
    log = work / "container.log"
    log.touch()
    emu = Emulator(db=str(work / "emulator.db"), ca_dir=str(work / "ca")).start()
    env = dict(os.environ)
    for k in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "HAL_LOGGING_DB"):
        env.pop(k, None)
    env.update(emu.env())
    env["HAL_LOGGING_DMI_DIR"] = str(work)  # not an Azure VM
    seconds = args.minutes * 60
    count_file = work / "sim-count.json"
    sim = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--simulate",
            str(log),
            "--rate",
            str(args.rate),
            "--seconds",
            str(seconds),
            "--seed",
            str(args.seed),
            "--count-out",
            str(count_file),
        ],
    )
    summary_path = work / "summary.json"
    fwd_err = work / "forwarder.stderr"
    fwd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hal_logging.cli.forward",
            "--follow",
            str(log),
            "--run-id",
            "soak-run",
            "--task-id",
            "soak-task",
            "--checkpoint",
            str(work / "ckpt"),
            "--summary-json",
            str(summary_path),
            "--drain-timeout",
            "120",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=fwd_err.open("wb"),
    )
    proc = psutil.Process(fwd.pid)
    poller = StorePoller(work / "emulator.db")
    stop_polling = threading.Event()

    def poll_loop() -> None:
        while not stop_polling.wait(0.25):
            poller.poll()

    threading.Thread(target=poll_loop, daemon=True).start()
    t0 = time.time()
    print(f"soak: {args.minutes} min at {args.rate} MB/s; work dir {work}", file=sys.stderr)
    faults = list(_faults(args, t0))
    active: tuple[float, Fault] | None = None
    fault_log: list[dict[str, Any]] = []
    restarts: list[float] = []
    csv_path = out_dir / "soak.csv"
    rows_out: list[dict[str, Any]] = []
    prev_cpu = proc.cpu_times()
    prev_t = time.time()
    fields = [
        "t_s",
        "rss_mb",
        "cpu_pct",
        "cpu_s",
        "log_mb",
        "rows_stored",
        "lat_p50_s",
        "lat_p99_s",
        "lat_max_s",
        "lat_n",
        "fault",
    ]
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        while sim.poll() is None:
            time.sleep(args.sample_every)
            now = time.time()
            # --- faults
            if active and now >= active[0] + active[1].duration:
                if not active[1].restart:
                    emu.set_faults(**CLEAR)
                active = None
            if active is None and faults and now >= faults[0][0]:
                _, fault = faults.pop(0)
                active = (now, fault)
                fault_log.append(
                    {"t_s": round(now - t0, 1), "fault": fault.label, "duration_s": fault.duration}
                )
                print(f"soak: t={now - t0:.0f}s fault: {fault.label}", file=sys.stderr)
                if fault.restart:
                    restarts.append(time.time())
                    emu.stop()
                    time.sleep(fault.duration)
                    emu.start()
                else:
                    emu.set_faults(**CLEAR)
                    emu.set_faults(**fault.changes)
            # --- sample
            try:
                cpu = proc.cpu_times()
                rss = proc.memory_info().rss
            except psutil.Error:
                print("soak: the forwarder died", file=sys.stderr)
                break
            dt = now - prev_t
            cpu_s = cpu.user + cpu.system
            cpu_pct = 100 * (cpu_s - (prev_cpu.user + prev_cpu.system)) / dt if dt > 0 else 0.0
            prev_cpu, prev_t = cpu, now
            lats = poller.take_latencies()
            sample = {
                "t_s": round(now - t0, 1),
                "rss_mb": round(rss / 1e6, 1),
                "cpu_pct": round(cpu_pct, 1),
                "cpu_s": round(cpu_s, 2),
                "log_mb": round(log.stat().st_size / 1e6, 1),
                "rows_stored": poller.rows,
                "lat_p50_s": round(_pct(lats, 0.5), 3),
                "lat_p99_s": round(_pct(lats, 0.99), 3),
                "lat_max_s": round(max(lats), 3) if lats else float("nan"),
                "lat_n": len(lats),
                "fault": active[1].label if active else "",
            }
            writer.writerow(sample)
            fh.flush()
            rows_out.append(sample)
    emu.set_faults(**CLEAR)
    sim.wait()
    written = (
        json.loads(count_file.read_text()) if count_file.exists() else {"records": -1, "bytes": -1}
    )
    expected = set(range(written["records"]))
    deadline = time.time() + 180
    while time.time() < deadline and not expected <= poller.seen:
        time.sleep(0.5)
    drained_at = time.time()
    fwd.send_signal(signal.SIGTERM)
    try:
        status = fwd.wait(timeout=180)
    except subprocess.TimeoutExpired:
        fwd.kill()
        status = -9
    stop_polling.set()
    poller.poll()
    lost = sorted(expected - poller.seen)
    dupes, distinct = poller.duplicates()
    unknown = poller.unknown_outcome_rows(restarts)
    windows = [(t0 + f["t_s"], t0 + f["t_s"] + f["duration_s"] + 30) for f in fault_log]
    calm = [lat for seen, lat in poller.all_lat if not any(a <= seen <= b for a, b in windows)]
    every = [lat for _, lat in poller.all_lat]
    stats = emu.stats()
    emu.close()
    rss = [r["rss_mb"] for r in rows_out]
    cpu = [r["cpu_pct"] for r in rows_out]
    summary_doc = json.loads(summary_path.read_text()) if summary_path.exists() else None
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, {sys.platform}",
        "python": sys.version.split()[0],
        "minutes": args.minutes,
        "rate_mb_s_target": args.rate,
        "bytes_written": written["bytes"],
        "records_written": written["records"],
        "records_seen": len(poller.seen & expected),
        "lost": len(lost),
        "lost_first": lost[:20],
        "rows_stored": poller.rows,
        "duplicate_rows": dupes,
        "unknown_outcome_rows": unknown,
        "duplicates_unexplained": max(0, dupes - unknown),
        "distinct_record_ids": distinct,
        "rss_mb_start": rss[0] if rss else None,
        "rss_mb_end": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "cpu_pct_mean": round(statistics.fmean(cpu), 1) if cpu else None,
        "cpu_pct_max": max(cpu) if cpu else None,
        "latency_p50_s": round(_pct(every, 0.5), 3),
        "latency_p99_s": round(_pct(every, 0.99), 3),
        "latency_max_s": round(max(every), 3) if every else None,
        "latency_calm_p50_s": round(_pct(calm, 0.5), 3),
        "latency_calm_p99_s": round(_pct(calm, 0.99), 3),
        "drain_after_writer_stopped_s": round(drained_at - (t0 + seconds), 1),
        "forwarder_exit": status,
        "forwarder_summary": summary_doc,
        "emulator": {
            k: stats[k]
            for k in (
                "requests",
                "status",
                "faults",
                "rows_accepted",
                "rows_stored",
                "max_compressed_bytes",
                "max_uncompressed_bytes",
                "over_limit_requests",
            )
        },
        "faults": fault_log,
        "forwarder_stderr_tail": fwd_err.read_text(errors="replace")[-2000:],
    }
    (out_dir / "soak-summary.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    plot(rows_out, fault_log, out_dir / "soak.png", result)
    print(
        json.dumps(
            {
                k: v
                for k, v in result.items()
                if k not in ("forwarder_stderr_tail", "forwarder_summary")
            },
            indent=1,
            default=str,
        )
    )
    ok = not lost and status == 0 and dupes <= unknown
    return 0 if ok else 1


def plot(
    samples: list[dict[str, Any]], faults: list[dict[str, Any]], path: Path, result: dict[str, Any]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    series = [
        ("RSS (MB)", [s["rss_mb"] for s in samples], None),
        ("CPU (% of one core)", [s["cpu_pct"] for s in samples], None),
        (
            "latency p50 / p99 (s)",
            [s["lat_p50_s"] for s in samples],
            [s["lat_p99_s"] for s in samples],
        ),
        ("rows stored", [s["rows_stored"] for s in samples], None),
    ]
    for ax, (label, ys, ys2) in zip(axes, series, strict=True):
        ax.plot(t, ys, lw=1, label=label.split(" (")[0] if ys2 else None)
        if ys2:
            ax.plot(t, ys2, lw=1, label="p99")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
        for f in faults:
            ax.axvspan(f["t_s"] / 60, (f["t_s"] + f["duration_s"]) / 60, color="red", alpha=0.12)
    for f in faults:
        axes[0].annotate(
            f["fault"],
            (f["t_s"] / 60, axes[0].get_ylim()[1]),
            fontsize=7,
            rotation=90,
            va="top",
            color="darkred",
        )
    axes[-1].set_xlabel("minutes (red: injected fault)")
    fig.suptitle(
        f"hal-logging-forward --follow soak: {result['minutes']} min, {result['bytes_written'] / 1e6:.0f} MB, "
        f"{result['records_written']} records, lost {result['lost']}, duplicates {result['duplicate_rows']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=1.0, help="MB/s the simulated container writes")
    p.add_argument("--fault-every", type=float, default=120.0, help="seconds between fault starts")
    p.add_argument("--first-fault", type=float, default=60.0, help="seconds before the first fault")
    p.add_argument("--sample-every", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--simulate", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--count-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.simulate:
        return simulate(
            Path(args.simulate), args.rate, args.seconds, args.seed, Path(args.count_out)
        )
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
