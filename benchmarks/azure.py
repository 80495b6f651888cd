"""Azure path benchmark: the forwarder into the local stand-in, against the naive SDK script.

Measured in one run, side by side (the ratios are the result):

* **forwarder**: ``hal-logging-forward FILE`` with the ``AZURE_MONITOR_*``
  environment, i.e. the real ``LogsIngestionClient`` and
  ``ManagedIdentityCredential`` over TLS to the stand-in, every guarantee on
  (checkpoint, redaction, folding, exact 1 MiB gzip requests, retries).
* **forwarder_no_filters**: the same with ``--no-redact --no-fold-repeats``
  (shows what the cost-control filters cost).
* **naive**: ``json.loads`` per line, then ``LogsIngestionClient.upload(list)``
  (the SDK's own chunking: stdlib ``json`` twice per row, gzip level 9). Its
  chunks overshoot 1 MiB (docs/facts.md §2), so it gets a stand-in that tolerates them
  (and counts them as over the limit).

* **careful_path**: the forwarder on the same file with ``--run-id other``:
  every line claims RunID ``bench``, a context other than the forwarder's, so
  each takes the careful path and keeps its claim (``Properties.hal.claimed``).
  Reported as its CPU over the fast path's (goal <= 1.3).

Also measured, to show the floor the Azure part sits on: **pipeline_only**
(``--dry-run``: the same parsing, filters and stats, nothing sent) and
**sdk_import** (a process that only imports ``azure.monitor.ingestion`` and
``azure.identity``, which pulls msal and cryptography).

All run as subprocesses, measured with ``wait4``: wall seconds (→ MB/s of
input), CPU seconds and peak RSS of that process alone; the run with the best
wall of ``--repeat`` alternated rounds, CPU ratios from the best CPU of each.
Each is measured on the 1x input (``--lines``, 100k by default) and the 4x
input: the forwarder lives for a whole task, so the steady state (4x) is what
the goals are judged on (issue 15); 1x is reported beside it.

The stand-ins run in this process (their CPU is not counted) and check but do
not store rows. On this 2-core machine their CPU still competes for wall time
with the forwarder's reading and delivery threads, while the naive script is
serial and barely overlaps its stand-in; so the stand-in checks each request's
rows with C-level calls over the whole request when there is nothing to note
(~1.5 µs a row instead of ~7, same answers: tests/test_emulator_server.py),
which makes the wall ratio fairer to the forwarder, not the service faster. Also measured in-process: serialising + packing + gzipping the
same rows our way against the SDK's ``_create_gzip_requests`` (why the uploader
sends its own gzip body rather than a list).

Goals (issue 15, on the 4x input): >= 3x the naive throughput, <= 0.40x its
CPU seconds, peak RSS < 70 MB in every run, no request over either limit; the
careful path within 1.3x the fast path's CPU. Runs in about three minutes
(``--only 1x`` for a quick look)::

    .venv/bin/python benchmarks/azure.py [--lines 100000] [--repeat 2] [--only 1x|4x] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This file is named azure.py: keep its folder off the path so `import azure` is the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks.agent_lines import write_agent_lines  # noqa: E402
from hal_logging.emulator import MAX_REQUEST_BYTES, Emulator  # noqa: E402

NAIVE = r"""
import json, os, sys
from azure.identity import ManagedIdentityCredential
from azure.monitor.ingestion import LogsIngestionClient
rows = []
with open(sys.argv[1], "rb") as fh:
    for line in fh:
        rows.append(json.loads(line))
client = LogsIngestionClient(os.environ["AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"], ManagedIdentityCredential())
client.upload(os.environ["AZURE_MONITOR_DATA_COLLECTION_RULE_ID"], os.environ["AZURE_MONITOR_STREAM_NAME"], rows)
"""


def make_input(path: Path, n: int) -> None:
    """``n`` wire lines written by the real JsonFormatter: a realistic agent mix (~330 B/line).

    Each line claims RunID ``bench`` (as a container with ``HAL_RUN_ID=bench``
    writes it): the forwarder run with ``--run-id bench`` takes the fast path,
    with ``--run-id other`` every line takes the careful path and keeps its claim.
    """
    path.unlink(missing_ok=True)
    write_agent_lines(path, n, observation=True)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"RunID":""', b'"RunID":"bench"'))


SDK_IMPORT = "import azure.monitor.ingestion, azure.identity, requests"

LAUNCHER = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, ru = os.wait4(proc.pid, 0)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss_mb": ru.ru_maxrss / 1024, "status": os.waitstatus_to_exitcode(status),
                  "stderr": err.decode(errors="replace")[-3000:]}))
"""


def timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one child process alone.

    Started from a small launcher process: a child forked from this (large)
    process would report this process's RSS as its own peak.
    """
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, json.dumps(argv)], env=env, capture_output=True, check=True
    )
    result = json.loads(out.stdout)
    if result["status"] != 0:
        raise SystemExit(f"{argv[:4]} failed: {result['stderr']}")
    return {k: float(result[k]) for k in ("wall", "cpu", "rss_mb")}


#: The forwarder as its console script runs it (``hal-logging-forward``): its
#: module imported, not run as ``__main__`` (which Python compiles from source each time).
FORWARD = "import sys; from hal_logging.cli.forward import main; sys.exit(main())"


def client_env(emu: Emulator, pycache: Path) -> dict[str, str]:
    """The client processes' environment, pointed at ``emu``.

    Every side runs with compiled bytecode, as an installed package does: an
    environment that forbids writing it (PYTHONDONTWRITEBYTECODE) would make
    each forwarder run compile its ~60 modules (~40 ms of CPU) while the naive
    script's imports are site-packages compiled at install. Cached in the
    temporary folder; the first of the ``--repeat`` runs fills it.
    """
    env = dict(os.environ)
    for key in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID"):
        env.pop(key, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(emu.env())
    return env


def encode_compare(src: Path, rows_limit: int) -> dict[str, Any]:
    """CPU of turning rows into request bodies: our encode+pack vs the SDK's list path."""
    from azure.monitor.ingestion._helpers import _create_gzip_requests

    from hal_logging.azure.uploader import Uploader

    with src.open("rb") as fh:
        rows = [json.loads(line) for _, line in zip(range(rows_limit), fh, strict=False)]
    for row in rows:
        row.pop("_hal", None)
    up = Uploader("https://127.0.0.1:9", "dcr-bench")
    t0 = time.process_time()
    packets = up.pack(up.encode(rows))
    ours = time.process_time() - t0
    t0 = time.process_time()
    sdk = list(_create_gzip_requests(rows))
    theirs = time.process_time() - t0
    up.close()
    sdk_raw = max(len(json.dumps(chunk)) for _, chunk in sdk)
    return {
        "rows": len(rows),
        "ours_cpu_s": round(ours, 3),
        "sdk_list_path_cpu_s": round(theirs, 3),
        "ratio_ours_vs_sdk": round(ours / theirs, 2),
        "ours_requests": len(packets),
        "sdk_requests": len(sdk),
        "ours_max_uncompressed": max(p.raw_size for p in packets),
        "sdk_max_uncompressed_approx": sdk_raw,
        "ours_bytes_gzip": sum(len(p.body) for p in packets),
        "sdk_bytes_gzip": sum(len(g) for g, _ in sdk),
    }


def run_size(
    tmp: Path, lines: int, repeat: int, emus: tuple[Emulator, Emulator], pycache: Path
) -> dict[str, Any]:
    """Every client on one input of ``lines`` lines, alternated ``repeat`` times; best of each."""
    ours_emu, naive_emu = emus
    src = tmp / f"run-{lines}.log"
    make_input(src, lines)
    size_mb = src.stat().st_size / 1e6
    runs: dict[str, list[dict[str, float]]] = {
        "forwarder": [],
        "naive": [],
        "forwarder_no_filters": [],
        "careful_path": [],
    }
    floors: dict[str, list[dict[str, float]]] = {"pipeline_only": [], "sdk_import": []}
    stats: dict[str, dict[str, Any]] = {}
    for r in range(repeat):
        for name in ("naive", "forwarder", "forwarder_no_filters", "careful_path"):
            emu = naive_emu if name == "naive" else ours_emu
            emu.reset_stats()
            if name != "naive":
                cmd = [sys.executable, "-c", FORWARD, "-q", "--run-id"]
                # careful_path: the lines claim RunID 'bench', the forwarder knows another
                # run: every line keeps its claim under Properties.hal.claimed.
                cmd.append("other" if name == "careful_path" else "bench")
                cmd += ["--checkpoint", str(tmp / f"ckpt-{name}-{lines}-{r}")]
                cmd += ["--dead-letter", str(tmp / "dead.jsonl")]
                if name == "forwarder_no_filters":
                    cmd += ["--no-redact", "--no-fold-repeats"]
                cmd.append(str(src))
            else:
                cmd = [sys.executable, "-c", NAIVE, str(src)]
            runs[name].append(timed(cmd, client_env(emu, pycache)))
            s = emu.stats()
            if s["rows_accepted"] < lines:
                raise SystemExit(f"{name}: only {s['rows_accepted']} of {lines} rows accepted: {s}")
            stats[name] = s
        dry = [sys.executable, "-c", FORWARD, "-q", "--run-id"]
        dry += ["bench", "--dry-run", "--no-checkpoint", str(src)]
        floors["pipeline_only"].append(timed(dry, client_env(ours_emu, pycache)))
        floors["sdk_import"].append(
            timed([sys.executable, "-c", SDK_IMPORT], client_env(ours_emu, pycache))
        )
    best = {k: min(v, key=lambda x: x["wall"]) for k, v in runs.items()}
    result: dict[str, Any] = {"input_mb": round(size_mb, 1), "lines": lines}
    for name, b in best.items():
        s = stats[name]
        result[name] = {
            "mb_per_s": round(size_mb / b["wall"], 1),
            "wall_s": round(b["wall"], 2),
            "cpu_s": round(b["cpu"], 2),
            "best_cpu_s": round(min(x["cpu"] for x in runs[name]), 2),
            "peak_rss_mb": round(b["rss_mb"], 1),
            "max_peak_rss_mb": round(max(x["rss_mb"] for x in runs[name]), 1),
            "requests": s["requests"],
            "max_uncompressed_bytes": s["max_uncompressed_bytes"],
            "max_compressed_bytes": s["max_compressed_bytes"],
            "requests_over_limit": s["over_limit_requests"],
            "undeclared_columns": s["undeclared_columns"],
        }
    naive_cpu = min(x["cpu"] for x in runs["naive"])
    fwd_cpu = min(x["cpu"] for x in runs["forwarder"])
    result["ratio_throughput_vs_naive"] = round(
        best["naive"]["wall"] / best["forwarder"]["wall"], 2
    )
    result["ratio_cpu_vs_naive"] = round(fwd_cpu / naive_cpu, 2)
    result["ratio_cpu_no_filters_vs_naive"] = round(
        min(x["cpu"] for x in runs["forwarder_no_filters"]) / naive_cpu, 2
    )
    result["ratio_careful_vs_fast_cpu"] = round(
        min(x["cpu"] for x in runs["careful_path"]) / fwd_cpu, 2
    )
    for name, values in floors.items():
        b = min(values, key=lambda x: x["cpu"])
        result[name] = {
            "cpu_s": round(b["cpu"], 2),
            "peak_rss_mb": round(b["rss_mb"], 1),
            "cpu_vs_naive": round(b["cpu"] / naive_cpu, 2),
        }
    result["within_both_limits"] = (
        result["forwarder"]["max_uncompressed_bytes"] <= MAX_REQUEST_BYTES
        and result["forwarder"]["max_compressed_bytes"] <= MAX_REQUEST_BYTES
        and result["forwarder"]["requests_over_limit"] == 0
        and result["careful_path"]["requests_over_limit"] == 0
    )
    result["goals_met"] = (
        result["ratio_throughput_vs_naive"] >= 3
        and result["ratio_cpu_vs_naive"] <= 0.40
        and result["forwarder"]["max_peak_rss_mb"] < 70
        and result["within_both_limits"]
    )
    result["_src"] = src
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000, help="the 1x input (4x is 4 times it)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", choices=["1x", "4x"], help="one input size (quick iterations)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    sizes = {"1x": args.lines, "4x": 4 * args.lines}
    if args.only:
        sizes = {args.only: sizes[args.only]}
    result: dict[str, Any] = {"repeat": args.repeat}
    with tempfile.TemporaryDirectory(prefix="hal-bench-azure-") as tmp_name:
        tmp = Path(tmp_name)
        pycache = tmp / "pycache"
        ours_emu = Emulator(ca_dir=str(tmp / "ca1"), store=False).start()
        naive_emu = Emulator(ca_dir=str(tmp / "ca2"), store=False, tolerate_oversize=True).start()
        try:
            for label, lines in sizes.items():
                result[label] = run_size(tmp, lines, args.repeat, (ours_emu, naive_emu), pycache)
        finally:
            ours_emu.close()
            naive_emu.close()
        first = next(iter(result[k] for k in sizes))
        compare = encode_compare(first.pop("_src"), min(args.lines, 30_000))
        for label in sizes:
            result[label].pop("_src", None)
    result["encode_and_pack"] = compare
    goal_at = "4x" if "4x" in sizes else next(iter(sizes))
    result["goals_measured_on"] = goal_at
    result["goals_met"] = result[goal_at]["goals_met"]
    result["careful_within_1_3x"] = result[goal_at]["ratio_careful_vs_fast_cpu"] <= 1.3
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
