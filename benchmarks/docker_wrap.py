"""Wrap mode through ``docker run`` against the same program under plain pipes, one run.

The program writes 100k wire lines (~42 MB, written by the real ``JsonFormatter``
as in ``benchmarks/forward.py``) to stdout in large writes, so what is measured is the path from the program's
stdout to committed rows in a fresh local workspace, not the program:

* **pipes**: ``hal-logging-forward -- python dump.py lines.jsonl``;
* **docker run**: the same program in a real container (the test image: this
  checkout's Python bind-mounted into an empty-folders image, ``--network none``);
* **docker run -t**: the same under a pseudo-terminal (``\\r\\n`` line ends, one stream);
* **docker run (empty)**: a container that prints nothing, to show the fixed cost
  of starting and removing one (included in the docker figures above).

Rounds are interleaved and the best of ``--repeat`` is kept, so load on the
machine hits every variant alike. Each run's table is checked (every line
stored). Prints lines/s and the ratios docker/pipes. Skips with one line when
no Docker daemon answers::

    .venv/bin/python benchmarks/docker_wrap.py [--lines 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from agent_lines import write_agent_lines  # noqa: E402

from tests.docker_helpers import bench_kit  # noqa: E402

DUMP = """\
import sys
with open(sys.argv[1], "rb") as fh:
    while True:
        data = fh.read(1 << 16)
        if not data:
            break
        sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
"""


def forward(cmd: list[str], work: Path, expect: int) -> float:
    """Wall seconds of one wrap-mode run into a fresh workspace (checked)."""
    db = work / f"bench-{time.monotonic_ns()}.db"
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.forward", "-q", "--db", str(db), "--", *cmd],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"forwarder failed ({res.returncode}): {res.stderr[-500:]}")
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute('SELECT count(*) FROM "BenchmarkRuns_CL"').fetchone()
    if n != expect + 1:  # + the final exit-status row
        raise SystemExit(f"{n - 1} rows stored, expected {expect}")
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    kit = bench_kit()
    if kit is None:
        return
    with tempfile.TemporaryDirectory(prefix="hal-docker-bench-") as tmp:
        work = Path(tmp)
        data = work / "lines.jsonl"
        write_agent_lines(data, args.lines)
        dump = work / "dump.py"
        dump.write_text(DUMP)
        mb = data.stat().st_size / 1e6
        variants = {
            "pipes": ([sys.executable, str(dump), str(data)], args.lines),
            "docker run": (kit.python_argv(dump, data, rm=True, mounts=[work]), args.lines),
            "docker run -t": (
                kit.python_argv(dump, data, rm=True, tty=True, mounts=[work]),
                args.lines,
            ),
            "docker run (empty)": (kit.python_argv("-c", "pass", rm=True), 0),
        }
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(args.repeat):
            for name, (cmd, expect) in variants.items():
                best[name] = min(best[name], forward(cmd, work, expect))
    print(f"{args.lines} wire lines, {mb:.1f} MB, best of {args.repeat} (wall seconds)")
    for name, seconds in best.items():
        rate = f"{args.lines / seconds:12,.0f} lines/s" if name != "docker run (empty)" else ""
        print(f"  {name:20s} {seconds:7.2f} s {rate}")
    base = best["pipes"]
    for name in ("docker run", "docker run -t"):
        print(f"  throughput ratio {name} / pipes: {base / best[name]:.3f}")
    start = best["docker run (empty)"]
    for name in ("docker run", "docker run -t"):
        net = best[name] - start
        if net > 0:
            print(
                f"  without the container's start ({start:.2f} s): {name} / pipes {base / net:.3f}"
            )


if __name__ == "__main__":
    main()
