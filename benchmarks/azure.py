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

Also measured, to show the floor the Azure part sits on: **pipeline_only**
(``--dry-run``: the same parsing, filters and stats, nothing sent) and
**sdk_import** (a process that only imports ``azure.monitor.ingestion`` and
``azure.identity``, which pulls msal and cryptography).

All run as subprocesses, measured with ``wait4``: wall seconds (→ MB/s of
input), CPU seconds and peak RSS of that process alone; best of ``--repeat``.
The stand-ins run in this process (their CPU is not counted) and check but do
not store rows. Also measured in-process: serialising + packing + gzipping the
same rows our way against the SDK's ``_create_gzip_requests`` (why the uploader
sends its own gzip body rather than a list).

Goal (issue 5): >= 3x the naive throughput, <= 0.40x its CPU seconds, peak RSS
< 70 MB, no request over either limit. Runs in about a minute::

    .venv/bin/python benchmarks/azure.py [--lines 100000] [--repeat 2]
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
    """``n`` wire lines written by the real JsonFormatter: a realistic agent mix (~330 B/line)."""
    path.unlink(missing_ok=True)
    write_agent_lines(path, n, observation=True)


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hal-bench-azure-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "run.log"
        pycache = tmp / "pycache"
        make_input(src, args.lines)
        size_mb = src.stat().st_size / 1e6
        ours_emu = Emulator(ca_dir=str(tmp / "ca1"), store=False).start()
        naive_emu = Emulator(ca_dir=str(tmp / "ca2"), store=False, tolerate_oversize=True).start()
        runs: dict[str, list[dict[str, float]]] = {
            "forwarder": [],
            "naive": [],
            "forwarder_no_filters": [],
        }
        floors: dict[str, list[dict[str, float]]] = {"pipeline_only": [], "sdk_import": []}
        stats: dict[str, dict[str, Any]] = {}
        try:
            for r in range(args.repeat):
                for name in ("naive", "forwarder", "forwarder_no_filters"):
                    emu = naive_emu if name == "naive" else ours_emu
                    emu.reset_stats()
                    if name != "naive":
                        cmd = [
                            sys.executable,
                            "-c",
                            FORWARD,
                            "-q",
                            "--run-id",
                            "bench",
                            "--checkpoint",
                            str(tmp / f"ckpt-{name}-{r}"),
                            "--dead-letter",
                            str(tmp / "dead.jsonl"),
                            *(
                                ["--no-redact", "--no-fold-repeats"]
                                if name == "forwarder_no_filters"
                                else []
                            ),
                            str(src),
                        ]
                    else:
                        cmd = [sys.executable, "-c", NAIVE, str(src)]
                    runs[name].append(timed(cmd, client_env(emu, pycache)))
                    s = emu.stats()
                    if s["rows_accepted"] < args.lines:
                        raise SystemExit(
                            f"{name}: only {s['rows_accepted']} of {args.lines} rows accepted: {s}"
                        )
                    stats[name] = s
                dry = [sys.executable, "-c", FORWARD, "-q", "--run-id"]
                dry += ["bench", "--dry-run", "--no-checkpoint", str(src)]
                floors["pipeline_only"].append(timed(dry, client_env(ours_emu, pycache)))
                floors["sdk_import"].append(
                    timed([sys.executable, "-c", SDK_IMPORT], client_env(ours_emu, pycache))
                )
        finally:
            ours_emu.close()
            naive_emu.close()
        compare = encode_compare(src, min(args.lines, 30_000))

    best = {k: min(v, key=lambda x: x["wall"]) for k, v in runs.items()}
    result: dict[str, Any] = {"input_mb": round(size_mb, 1), "lines": args.lines}
    for name, b in best.items():
        s = stats[name]
        result[name] = {
            "mb_per_s": round(size_mb / b["wall"], 1),
            "wall_s": round(b["wall"], 2),
            "cpu_s": round(b["cpu"], 2),
            "peak_rss_mb": round(b["rss_mb"], 1),
            "requests": s["requests"],
            "max_uncompressed_bytes": s["max_uncompressed_bytes"],
            "max_compressed_bytes": s["max_compressed_bytes"],
            "requests_over_limit": s["over_limit_requests"],
            "undeclared_columns": s["undeclared_columns"],
        }
    result["ratio_throughput_vs_naive"] = round(
        best["naive"]["wall"] / best["forwarder"]["wall"], 2
    )
    result["ratio_cpu_vs_naive"] = round(best["forwarder"]["cpu"] / best["naive"]["cpu"], 2)
    result["ratio_cpu_no_filters_vs_naive"] = round(
        best["forwarder_no_filters"]["cpu"] / best["naive"]["cpu"], 2
    )
    for name, values in floors.items():
        b = min(values, key=lambda x: x["cpu"])
        result[name] = {
            "cpu_s": round(b["cpu"], 2),
            "peak_rss_mb": round(b["rss_mb"], 1),
            "cpu_vs_naive": round(b["cpu"] / best["naive"]["cpu"], 2),
        }
    result["encode_and_pack"] = compare
    ok = (
        result["ratio_throughput_vs_naive"] >= 3
        and result["ratio_cpu_vs_naive"] <= 0.40
        and result["forwarder"]["peak_rss_mb"] < 70
        and result["forwarder"]["max_uncompressed_bytes"] <= MAX_REQUEST_BYTES
        and result["forwarder"]["requests_over_limit"] == 0
    )
    result["goals_met"] = ok
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
