"""``--container`` follow latency: a line printed in a container, until its row is in the workspace.

A real container (the test image: this checkout's Python, ``--network none``)
prints a wire line at ~60 lines/s, each carrying the wall-clock time it was
printed (the container shares the host's clock). The forwarder follows it with
``--container`` into a local workspace, which this script polls every 5 ms;
the delay of a line is the time its row was first seen minus the time it was
printed. Measured side by side in one run:

* ``--container``, json-file driver (the log file, read by offsets);
* ``--container``, ``local`` driver (the Engine API's log stream);
* wrap mode around the same ``docker run`` (pipes from the docker client),
  the baseline the ``--container`` paths are compared with.

The forwarder attaches first; the container waits at a gate (a file in a
bind mount) until the forwarder's first row is in the workspace, so attach
time is not counted. Skips with one line when no Docker daemon answers::

    .venv/bin/python benchmarks/container_latency.py [--lines 250] [--rate 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROGRAM = r"""
import json, os, sys, time
n, rate, gate = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
def line(msg, **props):
    row = {"_hal": 1, "TimeGenerated": "2024-05-01T00:00:00.000000Z", "Level": "INFO",
           "Message": msg, "LoggerName": "bench", "LogType": "AgentLog", "Properties": props}
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
line("ready")
while not os.path.exists(gate):
    time.sleep(0.01)
start = time.time()
for i in range(n):
    wait = start + i / rate - time.time()
    if wait > 0:
        time.sleep(wait)
    line(f"latency probe {i}", probe=i, sent=time.time())
"""


def _forward_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hal_logging.cli.forward", "-q", *args]


def _measure(db: Path, gate: Path, lines: int, timeout: float) -> list[float]:
    """Poll the workspace: open the gate once "ready" is there, then time every probe."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            if db.exists():
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    if conn.execute(
                        "SELECT 1 FROM BenchmarkRuns_CL WHERE Message = 'ready'"
                    ).fetchone():
                        break
                finally:
                    conn.close()
        time.sleep(0.01)
    else:
        raise SystemExit("the forwarder never delivered the container's first line")
    gate.touch()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    latencies: list[float] = []
    last = 0
    end = time.monotonic() + timeout
    while len(latencies) < lines and time.monotonic() < end:
        try:
            got = conn.execute(
                "SELECT rowid, Properties FROM BenchmarkRuns_CL WHERE rowid > ? ORDER BY rowid",
                (last,),
            ).fetchall()
        except sqlite3.OperationalError:
            got = []
        now = time.time()
        for rowid, props in got:
            last = rowid
            sent = json.loads(props).get("sent")
            if isinstance(sent, float):
                latencies.append(now - sent)
        time.sleep(0.005)
    conn.close()
    return latencies


def _stats(latencies: list[float]) -> dict[str, Any]:
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else float("nan")

    return {"probes": len(lat), "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": pct(1.0)}


def run_case(kit: Any, tmp: Path, case: str, lines: int, rate: float) -> dict[str, Any]:
    work = tmp / case
    work.mkdir()
    gate = work / "gate"
    db = work / "bench.db"
    prog = work / "prog.py"
    prog.write_text(PROGRAM)
    driver = "local" if case == "container-local" else "json-file"
    argv = kit.python_argv(
        prog,
        str(lines),
        str(rate),
        str(gate),
        writable=[work],
        detach=case != "wrap",
        rm=case == "wrap",
        extra=["--log-driver", driver],
    )
    env = {"XDG_STATE_HOME": str(work / "state"), "PATH": "/usr/bin:/bin"}
    cid = ""
    if case == "wrap":
        fwd = subprocess.Popen(
            _forward_argv("--db", str(db), "--", *argv),
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    else:
        cid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
        fwd = subprocess.Popen(
            _forward_argv("--db", str(db), "--container", cid),
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        latencies = _measure(db, gate, lines, timeout=lines / rate + 30)
        fwd.wait(timeout=120)
    finally:
        if fwd.poll() is None:
            fwd.kill()
            fwd.wait()
        if cid:
            kit.remove(cid)
    return {"case": case, **_stats(latencies)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=250)
    ap.add_argument("--rate", type=float, default=60.0, help="lines per second")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "container.txt")
    args = ap.parse_args()

    from tests.docker_helpers import bench_kit

    kit = bench_kit()
    if kit is None:
        return
    t0 = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="hal-container-bench-") as d:
        for case in ("container-json-file", "container-local", "wrap"):
            results.append(run_case(kit, Path(d), case, args.lines, args.rate))
    lines = [
        f"line printed in a container -> row in the workspace ({args.lines} lines at "
        f"{args.rate:g}/s each, polled every 5 ms)"
    ]
    for r in results:
        lines.append(
            f"  {r['case']:<22} p50 {r['p50_s']:.3f}s  p99 {r['p99_s']:.3f}s  "
            f"max {r['max_s']:.3f}s  ({r['probes']} probes)"
        )
    lines.append(f"(benchmark took {time.monotonic() - t0:.1f}s)")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
