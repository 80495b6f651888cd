"""``hal-logging report`` on a large run: generation time, page size, load time in Chromium.

A workspace of ``--tasks`` x ``--rows`` rows (default 1,000 x 1,000 = 1 million)
is built with one ``executemany`` into the real workspace schema (indexes
included): mostly INFO, some DEBUG and WARNING, errors with tracebacks in one
task in ten, and each task's exit row as the forwarder writes it (one task in
ten failed, one in fifty killed, one in twenty-five still running).

Measured:

* the report command (a subprocess): wall and CPU seconds, peak RSS, page size;
  next to it, as the yardstick, one bare ``GROUP BY TaskID`` count over the run
  (the least any per-task report must read);
* the page in headless Chromium (when installed): load time (navigation start
  to the load event, from the page's own Navigation Timing) and the time to open
  one task's detail (its log parsed and turned into DOM nodes).

::

    .venv/bin/python benchmarks/report.py [--tasks 1000] [--rows 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from hal_logging import schema  # noqa: E402
from hal_logging.pipeline.sinks.sqlite import Workspace  # noqa: E402

RUN = "bench-run"
WORDS = "agent tool model replied read_file edit_file run_tests tokens step patch diff ok".split()
TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/agent/loop.py", line 120, in step\n    result = tool(**args)\n'
    '  File "/agent/tools.py", line 44, in run_tests\n    raise ToolError(msg)\n'
    "ToolError: tests failed"
)


def build(path: Path, tasks: int, rows: int, seed: int = 7) -> None:
    Workspace(str(path)).close()  # the real schema and indexes
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    cols = ", ".join(f'"{c}"' for c in (*schema.COLUMN_NAMES, "_record_id"))
    sql = f'INSERT INTO "BenchmarkRuns_CL" ({cols}) VALUES ({", ".join("?" * 14)})'
    n = 0
    for t in range(tasks):
        task = f"task-{t:05d}"
        vm = f"vm-{t % 20:02d}"
        start = 1_000 + t * 3  # seconds since 10:00, staggered
        batch = []
        with_errors = t % 10 == 3
        for i in range(rows - 1):
            n += 1
            sec = start + i * 0.5
            level = rng.choices(["DEBUG", "INFO", "WARNING"], [10, 85, 5])[0]
            props: dict[str, object] = {"step": i, "tokens": rng.randint(100, 2000)}
            msg = " ".join(rng.choices(WORDS, k=rng.randint(6, 24)))
            if with_errors and i % 97 == 50:
                level = "ERROR"
                msg = "tool failed: tests failed"
                props["exception"] = {
                    "type": "ToolError",
                    "message": "tests failed",
                    "stacktrace": TRACE,
                }
            props["hal"] = {
                "stream": "stdout",
                "record_id": f"{n:032x}",
                "format": "wire",
                "offset": i * 180,
            }
            batch.append(_row(sec, level, msg, "agent", task, vm, "AgentLog", props, n))
        if t % 25 != 7:  # one in 25 still running: no exit row
            status = 137 if t % 50 == 11 else (1 if t % 10 == 3 else 0)
            n += 1
            props = {
                "command": "docker",
                "exit_status": status,
                "duration_seconds": rows * 0.5,
                "hal": {
                    "stream": "unknown",
                    "record_id": f"{n:032x}",
                    "format": "forwarder",
                    "offset": 0,
                },
            }
            level = "INFO" if status == 0 else "ERROR"
            msg = f"command docker finished: exit status {status} after {rows * 0.5:.1f}s"
            batch.append(
                _row(
                    start + rows * 0.5,
                    level,
                    msg,
                    "hal_logging.forward",
                    task,
                    vm,
                    "VMOperation",
                    props,
                    n,
                )
            )
        conn.executemany(sql, batch)
    conn.commit()
    conn.close()


def _row(
    sec: float, level: str, msg: str, logger: str, task: str, vm: str, log_type: str,
    props: dict[str, object], n: int,
) -> tuple[object, ...]:  # fmt: skip
    whole = int(sec)
    micro = int((sec - whole) * 1e6) + n % 1000
    t = f"2026-12-01T{10 + whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}.{micro:06d}Z"
    return (
        t, level, msg, logger, RUN, task, "swebench", "bench-agent", vm, "docker", "ci", log_type,
        json.dumps(props), f"{n:032x}",
    )  # fmt: skip


def time_report(db: Path, out: Path) -> dict[str, float]:
    argv = [sys.executable, "-m", "hal_logging.cli.main", "report", "--db", str(db)]
    argv += ["--run-id", RUN, "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"report failed: {err}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def time_group_by(db: Path) -> float:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    t0 = time.perf_counter()
    conn.execute(
        'SELECT "TaskID", count(*) FROM "BenchmarkRuns_CL" WHERE "RunID" = ? GROUP BY "TaskID"',
        (RUN,),
    ).fetchall()
    return time.perf_counter() - t0


def browser_times(page: Path, profile: Path) -> dict[str, float] | None:
    from tests.browser_helpers import Browser, find_chromium

    binary = find_chromium()
    if binary is None:
        return None
    with Browser(binary, profile) as b:
        t0 = time.perf_counter()
        b.open(page.as_uri())
        wall = time.perf_counter() - t0
        nav = b.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0];"
            " return [n.domContentLoadedEventEnd, n.loadEventEnd]; })()"
        )
        open_ms = b.evaluate(
            "(() => { const t = performance.now(); location.hash = '#task-3';"
            " window.dispatchEvent(new HashChangeEvent('hashchange'));"
            " return [performance.now() - t, document.querySelectorAll('#task-3 .log .line').length]; })()"
        )
    return {
        "wall": wall,
        "dcl_ms": nav[0],
        "load_ms": nav[1],
        "open_ms": open_ms[0],
        "lines": open_ms[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=1000, help="rows per task")
    ap.add_argument("--keep", type=Path, help="write the workspace and page here")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hal-report-bench-") as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        db, page = where / "bench.db", where / "report.html"
        db.unlink(missing_ok=True)
        t0 = time.perf_counter()
        build(db, args.tasks, args.rows)
        built = time.perf_counter() - t0
        total = sqlite3.connect(db).execute('SELECT count(*) FROM "BenchmarkRuns_CL"').fetchone()[0]
        print(
            f"workspace: {args.tasks} tasks x {args.rows} rows = {total} rows, "
            f"{db.stat().st_size / 1e6:.0f} MB, built in {built:.1f}s"
        )
        group_by = min(time_group_by(db) for _ in range(2))
        r = time_report(db, page)
        print(
            f"  report: wall {r['wall']:.2f}s  cpu {r['cpu']:.2f}s  peak rss {r['rss_mb']:.0f} MB  "
            f"page {page.stat().st_size / 1e6:.1f} MB"
        )
        print(
            f"  one bare GROUP BY TaskID over the run: {group_by:.2f}s (report = {r['wall'] / group_by:.1f}x)"
        )
        b = browser_times(page, where / "chromium-profile")
        if b is None:
            print("  browser: no chromium on PATH, load time not measured")
        else:
            print(
                f"  headless Chromium: DOMContentLoaded {b['dcl_ms']:.0f} ms, load {b['load_ms']:.0f} ms "
                f"(navigate to load event {b['wall']:.2f}s); opening a task: {b['open_ms']:.0f} ms "
                f"for {b['lines']} lines"
            )
    print(f"(benchmark took {time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
