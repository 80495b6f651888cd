"""Forwarder benchmark: the whole pipeline into the local workspace, against a naive script.

Measured in one run, side by side (ratios, not absolute numbers, are the result):

* **throughput** on two inputs, each at 1x (``--lines``, 100k) and 4x (400k)
  wire lines written by the real ``JsonFormatter``: ``agent`` (a step log line
  with four fields, ~420 B a line) and ``agent_extras`` (the same with a
  variable-length text field in Properties, ~390 to ~560 B: the Azure
  benchmark's input). The 4x files are written as long runs (times and record
  ids grow), not copies. Each goes into a fresh workspace with every guarantee
  on (checkpoints committed after the sink confirms, each batch a committed
  WAL transaction, the trust rule, 64 KB cuts, unique record ids, redaction,
  folding), against a naive script that reads the file, ``json.loads`` each
  line and ``executemany``s the rows into SQLite (stdlib, default settings).
  All run as subprocesses measured with ``wait4``, rounds interleaved, best of
  ``--repeat`` (medians printed too); wall and CPU seconds. Each run's table is
  checked: every line stored, no record id twice.
* **careful path**: ``agent_extras`` lines that claim ``RunID`` "bench",
  forwarded with ``--run-id bench`` (the claims agree: the fast path) and with
  ``--run-id other`` (every line claims a context the forwarder does not vouch
  for: the careful path keeps the claims). The ratio is the careful run's CPU
  over the fast run's, at 1x and 4x.
* **memory**: the forwarder's peak RSS at 1x and 4x (should be flat).
* **follow latency**: lines appended to a followed file with their send time;
  the time until each is visible in the workspace (p50, p99).
* **idle CPU**: the followed forwarder's CPU use over a few idle seconds.

Goals: speed >= 1x the naive script on both inputs at 1x and 4x (issues 4
and 15), careful path <= 1.3x the fast path's CPU (issue 15), RSS < 100 MB and
flat, p99 < 1.5 s, ~0 idle CPU. Runs in about six minutes with ``--repeat
3`` (ten with 5); ``--sizes 1`` skips the 4x inputs::

    .venv/bin/python benchmarks/forward.py [--lines 100000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
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


#: The inputs: name -> write_agent_lines options.
INPUTS: dict[str, dict[str, Any]] = {
    "agent": {},
    "agent_extras": {"observation": True},
}
#: The careful-path input: lines that claim a run (see the module docstring).
CLAIMED: dict[str, Any] = {"observation": True, "context": {"RunID": "bench"}}


def make_input(path: Path, n: int, **options: Any) -> None:
    """``n`` wire lines written by the real JsonFormatter (a realistic agent mix)."""
    path.unlink(missing_ok=True)
    write_agent_lines(path, n, **options)


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


def _fresh(tmp: Path, name: str) -> tuple[Path, Path]:
    for p in tmp.glob(f"{name}.*"):
        p.unlink(missing_ok=True)
    return tmp / f"{name}.db", tmp / f"{name}.ckpt"


def _check(db: Path, naive: bool, lines: int) -> None:
    """Every line stored, once (the inputs have no repeats to fold)."""
    conn = sqlite3.connect(db)
    try:
        if naive:
            n = distinct = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        else:
            n, distinct = conn.execute(
                'SELECT count(*), count(DISTINCT "_record_id") FROM BenchmarkRuns_CL'
            ).fetchone()
    finally:
        conn.close()
    assert n == distinct == lines, (db.name, n, distinct, lines)


def _summary(runs: list[dict[str, float]], size_mb: float) -> dict[str, Any]:
    best = min(runs, key=lambda x: x["wall"])
    return {
        "mb_per_s": round(size_mb / best["wall"], 1),
        "wall_s": round(best["wall"], 3),
        "cpu_s": round(min(x["cpu"] for x in runs), 3),
        "wall_median_s": round(statistics.median(x["wall"] for x in runs), 3),
        "cpu_median_s": round(statistics.median(x["cpu"] for x in runs), 3),
        "rss_mb": round(max(x["rss_mb"] for x in runs), 1),
        "runs": len(runs),
    }


def throughput(
    tmp: Path, files: dict[str, tuple[Path, int]], repeat: int, env: dict[str, str]
) -> dict[str, Any]:
    """The measured runs, rounds interleaved; see the module docstring.

    ``files``: case name ("agent@1x", ..., "claimed@4x") -> (input file, lines).
    """
    # Warm-up (bytecode cache, page cache): not measured.
    src = next(iter(files.values()))[0]
    warm = tmp / "warm.log"
    with src.open("rb") as fh, warm.open("wb") as out:
        head = fh.read(1 << 20)
        out.write(head[: head.rfind(b"\n") + 1])
    timed(forward_argv("--db", str(tmp / "warm.db"), "--no-checkpoint", str(warm)), env)
    timed([sys.executable, "-c", NAIVE, str(warm), str(tmp / "warm-naive.db")], env)
    variants: dict[str, list[str] | None] = {}  # variant -> extra forwarder args (None: naive)
    for case in files:
        if case.startswith("claimed"):
            variants[f"{case}/fast"] = ["--run-id", "bench"]
            variants[f"{case}/careful"] = ["--run-id", "other"]
        else:
            variants[f"{case}/naive"] = None
            variants[f"{case}/forward"] = []
            if case.endswith("@1x"):
                variants[f"{case}/forward_no_filters"] = ["--no-redact", "--no-fold-repeats"]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(repeat):
        for variant, extra in variants.items():
            case = variant.split("/")[0]
            path, lines = files[case]
            db, ckpt = _fresh(tmp, "run")
            if extra is None:
                argv = [sys.executable, "-c", NAIVE, str(path), str(db)]
            else:
                argv = forward_argv("--db", str(db), "--checkpoint", str(ckpt), *extra, str(path))
            results[variant].append(timed(argv, env))
            _check(db, extra is None, lines)
            print(f"  round {r + 1}/{repeat} {variant}: {results[variant][-1]}", file=sys.stderr)
    _fresh(tmp, "run")
    out: dict[str, Any] = {}
    for case, (path, lines) in files.items():
        size_mb = path.stat().st_size / 1e6
        c: dict[str, Any] = {"lines": lines, "input_mb": round(size_mb, 1)}
        for variant, runs in results.items():
            if variant.startswith(case + "/"):
                c[variant.split("/")[1]] = _summary(runs, size_mb)
        if "naive" in c:
            naive, fwd = c["naive"], c["forward"]
            c["ratio_speed_vs_naive"] = round(naive["wall_s"] / fwd["wall_s"], 2)
            c["ratio_speed_vs_naive_median"] = round(
                naive["wall_median_s"] / fwd["wall_median_s"], 2
            )
            c["ratio_cpu_vs_naive"] = round(fwd["cpu_s"] / naive["cpu_s"], 2)
            if "forward_no_filters" in c:
                c["ratio_speed_no_filters_vs_naive"] = round(
                    naive["wall_s"] / c["forward_no_filters"]["wall_s"], 2
                )
        else:
            c["ratio_cpu_careful_vs_fast"] = round(c["careful"]["cpu_s"] / c["fast"]["cpu_s"], 2)
            c["ratio_cpu_careful_vs_fast_median"] = round(
                c["careful"]["cpu_median_s"] / c["fast"]["cpu_median_s"], 2
            )
        out[case] = c
    return out


def memory(cases: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of the forwarder at 1x and 4x, from the throughput runs."""
    out: dict[str, Any] = {}
    for name in INPUTS:
        one, four = cases.get(f"{name}@1x"), cases.get(f"{name}@4x")
        if one is None or four is None:
            continue
        a, b = one["forward"]["rss_mb"], four["forward"]["rss_mb"]
        out[name] = {"rss_1x_mb": a, "rss_4x_mb": b, "ratio_4x_vs_1x": round(b / a, 2)}
    return out


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
    ap.add_argument(
        "--sizes", default="1,4", help="input sizes in multiples of --lines (default 1,4)"
    )
    ap.add_argument("--no-follow", action="store_true", help="skip the follow-mode part")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--json-out", type=Path, help="also write the results as JSON to this file")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAL_", "AZURE_", "OTEL_"))}
    sizes = [int(x) for x in args.sizes.split(",")]
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
        files: dict[str, tuple[Path, int]] = {}
        for k in sizes:
            n = args.lines * k
            for name, options in (*INPUTS.items(), ("claimed", CLAIMED)):
                path = tmp / f"{name}-{k}x.log"
                make_input(path, n, **options)
                files[f"{name}@{k}x"] = (path, n)
        cases = throughput(tmp, files, args.repeat, env)
        results: dict[str, Any] = {
            "lines": args.lines,
            "repeat": args.repeat,
            "cases": cases,
            "memory": memory(cases),
        }
        if not args.no_follow:
            results["follow"] = follow(tmp, env)
    results["bench_seconds"] = round(time.monotonic() - t0, 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(report(results))


def report(results: dict[str, Any]) -> str:
    """The results as text (what benchmarks/results/forward.txt holds)."""
    out: list[str] = []
    p = out.append
    p(f"best of {results['repeat']} rounds (median in brackets); CPU s and wall s per run")
    for case, c in results["cases"].items():
        p(f"{case}: {c['lines']} wire lines, {c['input_mb']} MB")
        for k in ("naive", "forward", "forward_no_filters", "fast", "careful"):
            if k in c:
                v = c[k]
                p(
                    f"  {k:<20} {v['mb_per_s']:>7} MB/s  wall {v['wall_s']:>6}s ({v['wall_median_s']})"
                    f"  cpu {v['cpu_s']:>6}s ({v['cpu_median_s']})  rss {v['rss_mb']:>6} MB"
                )
        if "ratio_speed_vs_naive" in c:
            extra = (
                f" (no filters: {c['ratio_speed_no_filters_vs_naive']}x)"
                if "ratio_speed_no_filters_vs_naive" in c
                else ""
            )
            p(
                f"  speed vs naive: {c['ratio_speed_vs_naive']}x"
                f" (median {c['ratio_speed_vs_naive_median']}x){extra},"
                f" cpu vs naive: {c['ratio_cpu_vs_naive']}x"
            )
        else:
            p(
                f"  careful path CPU / fast path CPU: {c['ratio_cpu_careful_vs_fast']}x"
                f" (median {c['ratio_cpu_careful_vs_fast_median']}x)"
            )
    for name, m in results["memory"].items():
        p(
            f"memory ({name}): peak RSS {m['rss_1x_mb']} MB at 1x, {m['rss_4x_mb']} MB at 4x"
            f" ({m['ratio_4x_vs_1x']}x)"
        )
    f = results.get("follow")
    if f:
        p(
            f"follow: p50 {f['latency_p50_s']}s, p99 {f['latency_p99_s']}s, max {f['latency_max_s']}s "
            f"over {f['probes']} lines; idle CPU {f['idle_cpu_percent']}%"
        )
    p(
        f"(benchmark took {results['bench_seconds']}s; load average after: "
        f"{results['load_average_after']})"
    )
    return "\n".join(out)


if __name__ == "__main__":
    main()
