"""Forwarder benchmark: the whole pipeline into the local workspace, against a naive script.

Measured in one run, side by side (ratios, not absolute numbers, are the result):

* **throughput**: 100k wire lines (~40 MB, written by the real ``JsonFormatter``)
  into a fresh workspace, with every guarantee on (checkpoints committed after
  the sink confirms, each batch a committed WAL transaction, the trust rule,
  64 KB cuts, unique record ids, redaction, folding), against a naive script
  that reads the file, ``json.loads`` each line and ``executemany``s the rows
  into SQLite (stdlib, default settings). Both run as subprocesses, rounds
  interleaved, best of ``--repeat``; wall and CPU seconds. Each run's table is
  checked: every line stored, no record id twice.
* **memory**: peak RSS of the forwarder at 1x and 4x the input (should be flat).
* **follow latency**: lines appended to a followed file with their send time;
  the time until each is visible in the workspace (p50, p99).
* **idle CPU**: the followed forwarder's CPU use over a few idle seconds.

Goal (issue 4): ratio >= 1 against the naive script, RSS < 100 MB and flat,
p99 < 1.5 s, ~0 idle CPU. Runs in about a minute or two::

    .venv/bin/python benchmarks/forward.py [--lines 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from agent_lines import write_agent_lines

NAIVE = r"""
import json, sqlite3, sys
cols = ["TimeGenerated", "Level", "Message", "LoggerName", "RunID", "TaskID", "Benchmark",
        "AgentName", "VMName", "ExecutionMode", "ExecutedBy", "LogType"]
conn = sqlite3.connect(sys.argv[2])
conn.execute("CREATE TABLE t (" + ", ".join(cols) + ", Properties)")
rows = []
with open(sys.argv[1], "rb") as fh:
    for line in fh:
        d = json.loads(line)
        rows.append(tuple(d.get(c, "") for c in cols) + (json.dumps(d.get("Properties", {})),))
        if len(rows) >= 5000:
            conn.executemany("INSERT INTO t VALUES (" + ",".join("?" * 13) + ")", rows)
            conn.commit()
            rows = []
conn.executemany("INSERT INTO t VALUES (" + ",".join("?" * 13) + ")", rows)
conn.commit()
"""


def make_input(path: Path, n: int, start: int = 0) -> None:
    """``n`` wire lines written by the real JsonFormatter (a realistic agent mix)."""
    write_agent_lines(path, n, start=start)


#: Runs the measured commands (one JSON request per line on stdin, one answer
#: per line on stdout). Why a helper process: Linux reports a child's peak RSS
#: (``ru_maxrss``) as at least the RSS of the process it was forked from, so
#: children of this benchmark (which holds the input, psutil, the formatter)
#: would inherit its size. The helper stays small.
SPAWNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    req = json.loads(line)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        req["argv"], env=req["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    err = proc.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "status": os.waitstatus_to_exitcode(status), "err": err[-2000:], "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
    }), flush=True)
"""
_spawner: subprocess.Popen[str] | None = None


def timed(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a command; wall seconds, CPU seconds and peak RSS (MB) of that command."""
    global _spawner
    if _spawner is None or _spawner.poll() is not None:
        _spawner = subprocess.Popen(
            [sys.executable, "-c", SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    assert _spawner.stdin is not None and _spawner.stdout is not None
    _spawner.stdin.write(json.dumps({"argv": argv, "env": dict(env or os.environ)}) + "\n")
    _spawner.stdin.flush()
    answer = json.loads(_spawner.stdout.readline())
    if answer["status"] != 0:
        raise SystemExit(f"{argv[:4]} failed: {answer['err']}")
    return {k: answer[k] for k in ("wall", "cpu", "rss_mb")}


def forward_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hal_logging.cli.forward", "-q", *args]


def throughput(
    tmp: Path, src: Path, repeat: int, env: dict[str, str], lines: int
) -> dict[str, Any]:
    size_mb = src.stat().st_size / 1e6
    # Warm-up (bytecode cache, page cache): not measured.
    warm = tmp / "warm.log"
    with src.open("rb") as fh, warm.open("wb") as out:
        head = fh.read(1 << 20)
        out.write(head[: head.rfind(b"\n") + 1])
    timed(forward_argv("--db", str(tmp / "warm.db"), "--no-checkpoint", str(warm)), env)
    timed([sys.executable, "-c", NAIVE, str(warm), str(tmp / "warm-naive.db")], env)
    results: dict[str, list[dict[str, float]]] = {
        "naive": [],
        "forward": [],
        "forward_no_filters": [],
    }
    for r in range(repeat):
        for name in results:
            db = tmp / f"{name}-{r}.db"
            ckpt = tmp / f"{name}-{r}.ckpt"
            if name == "naive":
                argv = [sys.executable, "-c", NAIVE, str(src), str(db)]
            elif name == "forward":
                argv = forward_argv("--db", str(db), "--checkpoint", str(ckpt), str(src))
            else:
                argv = forward_argv(
                    "--db",
                    str(db),
                    "--checkpoint",
                    str(ckpt),
                    "--no-redact",
                    "--no-fold-repeats",
                    str(src),
                )
            results[name].append(timed(argv, env))
            with sqlite3.connect(db) as conn:
                if name == "naive":
                    n = distinct = conn.execute("SELECT count(*) FROM t").fetchone()[0]
                else:
                    n, distinct = conn.execute(
                        'SELECT count(*), count(DISTINCT "_record_id") FROM BenchmarkRuns_CL'
                    ).fetchone()
            # Every line stored, once (the input has no repeats to fold).
            assert n == distinct == lines, (name, n, distinct, lines)
            for p in tmp.glob(f"{name}-{r}.*"):
                p.unlink()
    best = {k: min(v, key=lambda x: x["wall"]) for k, v in results.items()}
    out: dict[str, Any] = {"input_mb": round(size_mb, 1)}
    for k, b in best.items():
        out[k] = {
            "mb_per_s": round(size_mb / b["wall"], 1),
            "wall_s": round(b["wall"], 2),
            "cpu_s": round(b["cpu"], 2),
            "rss_mb": round(b["rss_mb"], 1),
        }
    out["ratio_speed_vs_naive"] = round(best["naive"]["wall"] / best["forward"]["wall"], 2)
    out["ratio_cpu_vs_naive"] = round(best["forward"]["cpu"] / best["naive"]["cpu"], 2)
    out["ratio_speed_no_filters_vs_naive"] = round(
        best["naive"]["wall"] / best["forward_no_filters"]["wall"], 2
    )
    return out


def memory(tmp: Path, src: Path, n: int, env: dict[str, str]) -> dict[str, Any]:
    big = tmp / "x4.log"
    with big.open("wb") as out:
        for _ in range(4):
            with src.open("rb") as fh:
                shutil.copyfileobj(fh, out)
    one = timed(forward_argv("--db", str(tmp / "m1.db"), "--no-checkpoint", str(src)), env)
    four = timed(forward_argv("--db", str(tmp / "m4.db"), "--no-checkpoint", str(big)), env)
    big.unlink()
    return {
        "rss_1x_mb": round(one["rss_mb"], 1),
        "rss_4x_mb": round(four["rss_mb"], 1),
        "ratio_4x_vs_1x": round(four["rss_mb"] / one["rss_mb"], 2),
    }


def follow(
    tmp: Path, env: dict[str, str], lines: int = 250, idle_seconds: float = 4.0
) -> dict[str, Any]:
    from hal_logging import _json, schema

    log = tmp / "follow.log"
    db = tmp / "follow.db"
    log.write_bytes(b"")
    proc = subprocess.Popen(
        forward_argv("--follow", "--db", str(db), str(log)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 20
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        sent: dict[int, float] = {}
        last_rowid = 0
        interval = 1 / 60  # ~60 lines/s, spread so every phase of the flush timer is hit
        next_send = time.monotonic()
        i = 0
        end = time.monotonic() + lines * interval + 5
        while time.monotonic() < end and len(latencies) < lines:
            now = time.monotonic()
            if i < lines and now >= next_send:
                row = schema.empty_row()
                row.update(
                    TimeGenerated="2024-05-01T00:00:00.000000Z",
                    Level="INFO",
                    Message=f"latency probe {i}",
                    LoggerName="bench",
                )
                row["Properties"] = {"probe": i}
                with log.open("ab") as fh:
                    fh.write(schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n")
                sent[i] = time.monotonic()
                i += 1
                next_send += interval
            try:
                got = conn.execute(
                    "SELECT rowid, Properties FROM BenchmarkRuns_CL WHERE rowid > ? ORDER BY rowid",
                    (last_rowid,),
                ).fetchall()
            except sqlite3.OperationalError:
                got = []
            t = time.monotonic()
            for rowid, props in got:
                last_rowid = rowid
                probe = json.loads(props).get("probe")
                if probe in sent:
                    latencies.append(t - sent[probe])
            time.sleep(0.005)
        conn.close()
        # Idle CPU: nothing is appended now.
        ps = psutil.Process(proc.pid)
        time.sleep(1.0)
        c0 = sum(ps.cpu_times()[:2])
        time.sleep(idle_seconds)
        idle_cpu = sum(ps.cpu_times()[:2]) - c0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    latencies.sort()

    def pct(p: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)
            if latencies
            else float("nan")
        )

    return {
        "probes": len(latencies),
        "latency_p50_s": pct(0.5),
        "latency_p99_s": pct(0.99),
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "idle_cpu_percent": round(idle_cpu / idle_seconds * 100, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAL_", "AZURE_", "OTEL_"))}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hal-forward-bench-") as d:
        tmp = Path(d)
        # Both sides run with compiled bytecode, as an installed package does: an
        # environment that forbids writing it (PYTHONDONTWRITEBYTECODE) would
        # otherwise make every forwarder run compile its ~60 modules (~40 ms)
        # while the naive script is one line of source. Cached in the temp dir,
        # never beside the sources; the warm-up run below fills it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        src = tmp / "wire.log"
        make_input(src, args.lines)
        results = {
            "lines": args.lines,
            "throughput": throughput(tmp, src, args.repeat, env, args.lines),
            "memory": memory(tmp, src, args.lines, env),
            "follow": follow(tmp, env),
        }
    results["bench_seconds"] = round(time.monotonic() - t0, 1)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    t, m, f = results["throughput"], results["memory"], results["follow"]
    print(f"input: {args.lines} wire lines, {t['input_mb']} MB")
    for k in ("naive", "forward", "forward_no_filters"):
        v = t[k]
        print(
            f"  {k:<20} {v['mb_per_s']:>7} MB/s  wall {v['wall_s']:>6}s  cpu {v['cpu_s']:>6}s  rss {v['rss_mb']:>6} MB"
        )
    print(
        f"  speed vs naive: {t['ratio_speed_vs_naive']}x (no filters: {t['ratio_speed_no_filters_vs_naive']}x), "
        f"cpu vs naive: {t['ratio_cpu_vs_naive']}x"
    )
    print(
        f"memory: peak RSS {m['rss_1x_mb']} MB at 1x, {m['rss_4x_mb']} MB at 4x ({m['ratio_4x_vs_1x']}x)"
    )
    print(
        f"follow: p50 {f['latency_p50_s']}s, p99 {f['latency_p99_s']}s, max {f['latency_max_s']}s "
        f"over {f['probes']} lines; idle CPU {f['idle_cpu_percent']}%"
    )
    print(f"(benchmark took {results['bench_seconds']}s)")


if __name__ == "__main__":
    main()
