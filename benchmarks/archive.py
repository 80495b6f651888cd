"""What the journal and ``--archive`` cost the forwarder (issue 16), side by side in one run.

Wrap mode on 100k lines (agent wire lines on stdout, plain text on stderr, 1 in
10), into the local workspace, three ways: ``--no-journal`` (the baseline), the
journal (the default), and the journal with ``--archive`` to a local folder.
Files mode likewise with and without ``--archive``. For each: CPU seconds
(user + system of the forwarder and its command, from ``wait4``) and wall
time, as ratios to the baseline; the median of ``--repeat`` runs, the
variants interleaved so drift hits them alike. Then the archive's compressed
size as a share of the raw bytes, and the framing choice: length-prefixed raw
bytes (what the journal writes) against base64 in JSON lines (Docker's
json-file shape), encode time and bytes.

    .venv/bin/python benchmarks/archive.py [--lines 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.agent_lines import write_agent_lines  # noqa: E402

#: The wrapped command: prints the prepared stdout and stderr files (stderr every 10th write).
PRINTER = """\
import os, sys
out = open(sys.argv[1], "rb").read().splitlines(keepends=True)
err = open(sys.argv[2], "rb").read().splitlines(keepends=True)
w1, w2 = sys.stdout.buffer, sys.stderr.buffer
j = 0
for i, line in enumerate(out):
    w1.write(line)
    if i % 10 == 0 and j < len(err):
        w1.flush(); w2.write(err[j]); w2.flush(); j += 1
w1.flush()
"""


def run(args: list[str], cwd: Path) -> tuple[float, float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "HAL_"))}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hal_logging.cli.forward", "-q", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        assert proc.stderr is not None
        raise SystemExit(f"forwarder failed ({code}): {proc.stderr.read().decode()[-2000:]}")
    return ru.ru_utime + ru.ru_stime, wall, code


def framing(chunks: list[bytes]) -> dict[str, float]:
    """Encode the same reads both ways: seconds and bytes."""
    head = struct.Struct("<2sBBdQII")
    t0 = time.perf_counter()
    raw = [head.pack(b"HJ", 68, 0, 1.0, 0, len(c), zlib.crc32(c)) + c for c in chunks]
    t_raw = time.perf_counter() - t0
    t0 = time.perf_counter()
    b64 = [
        json.dumps(
            {"stream": "stdout", "time": 1.0, "offset": 0, "log": base64.b64encode(c).decode()}
        ).encode()
        + b"\n"
        for c in chunks
    ]
    t_b64 = time.perf_counter() - t0
    return {
        "raw_seconds": t_raw,
        "base64_seconds": t_b64,
        "raw_bytes": sum(map(len, raw)),
        "base64_bytes": sum(map(len, b64)),
        "payload_bytes": sum(map(len, chunks)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hal-bench-archive-"))
    try:
        out, err = work / "out.log", work / "err.log"
        write_agent_lines(out, ns.lines)
        err.write_bytes(
            b"".join(
                b"plain text %d from a tool, no timestamp\n" % i for i in range(ns.lines // 10)
            )
        )
        (work / "printer.py").write_text(PRINTER)
        cmd = ["--", sys.executable, "printer.py", str(out), str(err)]
        variants = {
            "wrap --no-journal": lambda i: ["--db", f"w{i}a.db", "--no-journal", *cmd],
            "wrap, journal": lambda i: ["--db", f"w{i}b.db", *cmd],
            "wrap, journal + --archive": lambda i: [
                "--db",
                f"w{i}c.db",
                "--archive",
                f"arch{i}",
                *cmd,
            ],
            "files": lambda i: ["--db", f"f{i}a.db", "--no-checkpoint", str(out)],
            "files + --archive": lambda i: [
                "--db",
                f"f{i}b.db",
                "--no-checkpoint",
                "--archive",
                f"farch{i}",
                str(out),
            ],
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for i in range(ns.repeat):
            for name, argv in variants.items():
                cpu, wall, _ = run(argv(i), work)
                results[name].append((cpu, wall))
            for p in work.glob("hal-forward-journal-*"):
                if i < ns.repeat - 1:
                    p.unlink()
        med = {
            k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
            for k, v in results.items()
        }
        raw_printed = out.stat().st_size + err.stat().st_size
        print(f"input: {ns.lines} lines, {raw_printed / 1e6:.1f} MB printed; median of {ns.repeat}")
        print(f"{'variant':32} {'CPU s':>7} {'wall s':>7} {'CPU x':>6} {'wall x':>6}")
        for name, (cpu, wall) in med.items():
            base = med["files"] if name.startswith("files") else med["wrap --no-journal"]
            print(f"{name:32} {cpu:7.2f} {wall:7.2f} {cpu / base[0]:6.2f} {wall / base[1]:6.2f}")
        for folder, what in (("arch0", "wrap (the journal)"), ("farch0", "files (the file)")):
            (man,) = (work / folder).rglob("*.hal-archive.json")
            m = json.loads(man.read_text())
            printed = sum(s["bytes"] for s in m["streams"].values())
            print(
                f"archive of {what}: {m['content_bytes'] / 1e6:.1f} MB archived "
                f"({m['content_bytes'] / printed:.3f}x the bytes printed), "
                f"{m['compressed_bytes'] / 1e6:.2f} MB gzip: "
                f"{m['compressed_bytes'] / printed:.1%} of the bytes printed, {m['blocks']} block(s)"
            )
        journals = sorted(work.glob("hal-forward-journal-*.haljournal"))
        if journals:
            j = journals[-1].stat().st_size
            print(
                f"journal: {j / 1e6:.1f} MB for {raw_printed / 1e6:.1f} MB printed ({j / raw_printed:.3f}x)"
            )
        data = out.read_bytes()
        chunks = [data[k : k + 65536] for k in range(0, len(data), 65536)]
        f = framing(chunks)
        print(
            "framing of the same 64 KB reads: length-prefixed raw "
            f"{f['raw_seconds'] * 1e3:.1f} ms, +{f['raw_bytes'] / f['payload_bytes'] - 1:.3%} bytes; "
            f"base64 JSON lines {f['base64_seconds'] * 1e3:.1f} ms, "
            f"+{f['base64_bytes'] / f['payload_bytes'] - 1:.1%} bytes"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
