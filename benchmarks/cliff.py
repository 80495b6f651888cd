"""The slow cliffs, end to end: the forwarder into the local workspace, CPU per input.

The same agent output (``benchmarks/agent_lines.py``: wire lines written by the
real formatter with RunID 'bench') shipped by ``hal-logging-forward --db DIR``
as it is ('plain', the forwarder told ``--run-id bench``) and bent one way each:

* careful: the forwarder runs with ``--run-id other`` (every line claims a context);
* wrap, in the lifetime: ``-- cat FILE`` with every time inside the command's life;
* wrap, out of the lifetime: ``-- cat FILE`` with the file's own (older) times;
* reserved logger: every LoggerName under ``hal_logging.``;
* terminal (``\\r\\n``): the lines as ``docker run -t`` delivers them;
* docker json-file: the lines as Docker's json-file driver stores them.

CPU seconds of the forwarder and its children (``os.wait4``), each input
alternated between the trees given (``--tree``: a checkout, e.g. the branch's
base, and this one), best and median of ``--rounds``; each figure also as a
ratio to the same tree's 'plain' run::

    .venv/bin/python benchmarks/cliff.py --lines 100000 --rounds 3 --tree /tmp/base --tree .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agent_lines import write_agent_lines  # noqa: E402

CONTEXT = {"HAL_RUN_ID": "bench", "HAL_TASK_ID": "t1", "HAL_BENCHMARK": "b", "HAL_AGENT_NAME": "a"}


def make_inputs(tmp: Path, n: int) -> dict[str, Path]:
    os.environ.update(CONTEXT)
    plain = tmp / "plain.log"
    write_agent_lines(plain, n)
    data = plain.read_bytes()
    out = {"plain": plain}
    (tmp / "reserved.log").write_bytes(
        data.replace(b'"LoggerName":"bench.', b'"LoggerName":"hal_logging.')
    )
    out["reserved"] = tmp / "reserved.log"
    (tmp / "crlf.log").write_bytes(data.replace(b"\n", b"\r\n"))
    out["crlf"] = tmp / "crlf.log"
    docker = tmp / "docker.log"
    with docker.open("wb") as fh:
        for i, line in enumerate(data.splitlines(keepends=True)):
            rec = {
                "log": line.decode(),
                "stream": "stdout",
                "time": f"2024-05-01T12:00:{i // 1000 % 60:02d}.{i % 1000:03d}000000Z",
            }
            fh.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
    out["docker"] = docker
    return out


def _now_times(src: Path, dst: Path) -> None:
    """``src`` with every TimeGenerated set to now (inside a command started next)."""
    data = src.read_bytes()
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))
    lines = []
    for line in data.splitlines(keepends=True):
        i = line.index(b'"TimeGenerated":"') + 17
        lines.append(line[:i] + now.encode() + line[i + 19 :])
    dst.write_bytes(b"".join(lines))


def run(tree: Path, argv: list[str], tmp: Path) -> float:
    db = tmp / f"db-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "hal_logging.cli.forward", "-q", "--db", str(db), *argv]
    env = dict(os.environ, PYTHONPATH=str(tree))
    for k in CONTEXT:
        env.pop(k, None)
    proc = subprocess.Popen(
        cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed: {err.decode()[-2000:]}")
    for p in tmp.glob(db.name + "*"):
        p.unlink()
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tree", action="append", type=Path, required=True)
    ap.add_argument("--only", action="append", help="run only these cases")
    args = ap.parse_args()
    trees = [t.resolve() for t in args.tree]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        inputs = make_inputs(tmp, args.lines)
        now_file = tmp / "now.log"
        run_id = ["--run-id", "bench", "--task-id", "t1"]
        cases = {
            "plain": lambda: [*run_id, "--no-checkpoint", str(inputs["plain"])],
            "careful": lambda: [
                "--run-id",
                "other",
                "--task-id",
                "t1",
                "--no-checkpoint",
                str(inputs["plain"]),
            ],
            "wrap-in": lambda: (
                _now_times(inputs["plain"], now_file),
                [*run_id, "--", "cat", str(now_file)],
            )[1],
            "wrap-out": lambda: [*run_id, "--", "cat", str(inputs["plain"])],
            "reserved": lambda: [*run_id, "--no-checkpoint", str(inputs["reserved"])],
            "crlf": lambda: [*run_id, "--no-checkpoint", str(inputs["crlf"])],
            "docker": lambda: [*run_id, "--no-checkpoint", str(inputs["docker"])],
        }
        names = [c for c in cases if not args.only or c in args.only or c == "plain"]
        for tree in trees:  # warm-up (bytecode, page cache): not measured
            run(tree, cases["plain"](), tmp)
        cpu: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name in names:
                for tree in trees:
                    cpu.setdefault((name, str(tree)), []).append(run(tree, cases[name](), tmp))
        per = f"CPU s per {args.lines} lines"
        print(f"{'case':10s} " + " ".join(f"{str(t)[-28:]:>40s}" for t in trees))
        print(
            f"{'':10s} " + " ".join(f"{per + ' best/median, ratio to plain':>40s}" for _ in trees)
        )
        for name in names:
            cells = []
            for tree in trees:
                vals = cpu[(name, str(tree))]
                plain = min(cpu[("plain", str(tree))])
                cells.append(
                    f"{min(vals):6.2f} {statistics.median(vals):6.2f}  x{min(vals) / plain:4.2f}"
                )
            print(f"{name:10s} " + " ".join(f"{c:>40s}" for c in cells))


if __name__ == "__main__":
    main()
