"""Parsing throughput: Framer + Parser against the simplest baselines, same run.

* 200k wire lines (what ``configure()`` writes) vs ``json.loads`` per line (stdlib);
* 200k mixed text lines (prints, logging layouts, colours, progress bars, foreign
  JSON, tracebacks) vs bare line iteration (``for line in BytesIO``);
* the same wire lines as a pseudo-terminal delivers them (``docker run -t``: every
  line ends ``\r\n``) vs ``json.loads`` per line;
* the cliffs: the same wire lines where something sends (or used to send) them off
  the fast lane, each against the plain wire lines in the same run, in CPU
  seconds (``time.process_time``, runs alternated, best of ``--repeat``): the
  lines claiming a context other than the forwarder's ('careful': the forwarder
  runs with another RunID), times outside a wrapped command's lifetime, a
  reserved logger name, a Properties.hal of their own, a backslash escape in
  each Message, terminal colours in each Message, Docker's json-file format.
  The goal (issue 15): each within 1.3x the CPU of the plain lines.

Prints lines/s, MB/s and the ratios (parser speed / baseline speed). The goal for
wire lines is a ratio >= 0.5: the whole parse at least half as fast as merely
decoding each line with the stdlib. Runs in well under a minute:

    .venv/bin/python benchmarks/parse.py [--lines N] [--repeat R]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from collections.abc import Callable
from typing import Any

from hal_logging import _json, schema
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.parsing import Parser

CHUNK = 64 * 1024


def wire_lines(n: int) -> bytes:
    rnd = random.Random(1)
    out = io.BytesIO()
    for i in range(n):
        row: dict[str, object] = {schema.WIRE_VERSION_KEY: schema.WIRE_VERSION}
        row.update(dict.fromkeys(schema.COLUMN_NAMES, ""))
        row["TimeGenerated"] = (
            f"2024-05-01T12:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}000Z"
        )
        row["Level"] = rnd.choice(schema.LEVELS)
        row["Message"] = (
            f"step {i} finished with reward {rnd.random():.4f} after {rnd.randint(1, 90)} tool calls"
        )
        row["LoggerName"] = "agent.runner"
        row.update(
            RunID="run-42",
            TaskID=f"task-{i % 50}",
            Benchmark="swebench",
            AgentName="a1",
            ExecutionMode="docker",
            LogType="AgentLog",
        )
        row["Properties"] = {"step": i, "cost_usd": round(rnd.random(), 5), "model": "gpt-x"}
        out.write(_json.dumps(row) + b"\n")
    return out.getvalue()


_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/agent.py", line 10, in <module>\n'
    "    run()\n"
    "    ~~~^^\n"
    '  File "/app/agent.py", line 7, in run\n'
    "    raise ValueError('bad tool output')\n"
    "ValueError: bad tool output\n"
)


def text_lines(n: int) -> bytes:
    rnd = random.Random(2)
    parts: list[str] = []
    count = 0
    while count < n:
        k = rnd.randrange(10)
        i = count
        if k < 3:
            parts.append(
                f"Processing item {i}: fetched {rnd.randint(1, 999)} tokens from the model\n"
            )
        elif k == 3:
            parts.append(f"2024-05-01 12:00:{i % 60:02d},123 - agent - INFO - tool call {i} ok\n")
        elif k == 4:
            parts.append(f"INFO:agent.loop:iteration {i}\n")
        elif k == 5:
            parts.append(f"\x1b[32m[INFO]\x1b[0m \x1b[1mstep {i}\x1b[0m done\n")
        elif k == 6:
            parts.append(
                "".join(f"\r{p:3d}%|{'#' * (p // 10):10s}|" for p in range(0, 101, 20)) + "\n"
            )
        elif k == 7:
            parts.append(
                json.dumps(
                    {
                        "event": f"llm call {i}",
                        "level": "info",
                        "timestamp": "2024-05-01T12:00:00Z",
                        "tokens": i,
                    }
                )
                + "\n"
            )
        elif k == 8:
            parts.append(f"WARNING: retrying request {i} (429)\n")
        else:
            parts.append(_TRACEBACK)
            count += _TRACEBACK.count("\n") - 1
        count += 1
    return "".join(parts).encode()


def _framer_and_parser(**parser_args: Any) -> tuple[Framer, Parser]:
    args: dict[str, Any] = {"stream": "stdout", "source": "bench", "trusted": {"RunID": "run-42"}}
    return Framer("stdout"), Parser(**(args | parser_args))


def parse_all(data: bytes, **parser_args: Any) -> int:
    framer, parser = _framer_and_parser(**parser_args)
    n = 0
    now = time.time()
    for pos in range(0, len(data), CHUNK):
        for line in framer.feed(data[pos : pos + CHUNK], now):
            n += len(parser.feed(line))
    for line in framer.finish(now):
        n += len(parser.feed(line))
    return n + len(parser.finish())


def parse_chunks(data: bytes, **parser_args: Any) -> int:
    """As the forwarder parses: a chunk's lines at once (``feed_many``)."""
    framer, parser = _framer_and_parser(**parser_args)
    n = 0
    now = time.time()
    for pos in range(0, len(data), CHUNK):
        n += len(parser.feed_many(framer.feed(data[pos : pos + CHUNK], now)))
    n += len(parser.feed_many(framer.finish(now)))
    return n + len(parser.finish())


def _docker_json(data: bytes) -> bytes:
    """Lines as Docker's json-file log driver stores them."""
    out = io.BytesIO()
    for i, line in enumerate(data.splitlines(keepends=True)):
        rec = {
            "log": line.decode(),
            "stream": "stdout",
            "time": f"2024-05-01T12:00:{i // 1000 % 60:02d}.{i % 1000:03d}000000Z",
        }
        out.write(_json.dumps(rec) + b"\n")
    return out.getvalue()


def cliffs(wire: bytes) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(name, input, parser arguments): the plain wire lines bent one way each."""
    return [
        ("careful (claims another RunID)", wire, {"trusted": {"RunID": "other"}}),
        ("out of the lifetime (wrap mode)", wire, {"not_before": time.time()}),
        ("reserved logger name", wire.replace(b'"agent.runner"', b'"hal_logging.runner"'), {}),
        ("own Properties.hal", wire.replace(b'"Properties":{', b'"Properties":{"hal":1,'), {}),
        ("backslash escape in Message", wire.replace(b'"step ', b'"\\"step '), {}),
        ("colours in Message", wire.replace(b'"step ', b'"\\u001b[1mstep\\u001b[0m '), {}),
        ("docker json-file", _docker_json(wire), {}),
    ]


def cpu_ratio(
    data: bytes, other: bytes, args: dict[str, Any], repeat: int
) -> tuple[float, float, int]:
    """Best CPU seconds of the plain lines and of ``other`` (alternated), rows of ``other``."""
    best_plain = best_other = float("inf")
    rows = 0
    for _ in range(repeat):
        t0 = time.process_time()
        parse_chunks(data)
        t1 = time.process_time()
        rows = parse_chunks(other, **args)
        t2 = time.process_time()
        best_plain, best_other = min(best_plain, t1 - t0), min(best_other, t2 - t1)
    return best_plain, best_other, rows


def json_loads_each(data: bytes) -> int:
    n = 0
    for line in io.BytesIO(data):
        json.loads(line)
        n += 1
    return n


def iterate_lines(data: bytes) -> int:
    n = 0
    for _ in io.BytesIO(data):
        n += 1
    return n


def measure(
    baseline: Callable[[bytes], int], parser: Callable[[bytes], int], data: bytes, repeat: int
) -> tuple[float, float]:
    """Best time of each, runs interleaved so machine load hits both alike."""
    t_base, t_parse = float("inf"), float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        baseline(data)
        t1 = time.perf_counter()
        parser(data)
        t2 = time.perf_counter()
        t_base, t_parse = min(t_base, t1 - t0), min(t_parse, t2 - t1)
    return t_base, t_parse


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only-cliffs", action="store_true", help="skip the baselines")
    args = ap.parse_args()
    wire = wire_lines(args.lines)
    print(f"cliffs: CPU seconds per {args.lines} lines (feed_many), best of {args.repeat}")
    for name, data, parser_args in cliffs(wire):
        plain, other, rows = cpu_ratio(wire, data, parser_args, args.repeat)
        print(
            f"  {name:34s} plain {plain:6.3f} s  this {other:6.3f} s  "
            f"ratio {other / plain:5.2f}  ({rows} rows)"
        )
    if args.only_cliffs:
        return
    for name, data, baseline_name, baseline in (
        ("wire", wire, "json.loads per line", json_loads_each),
        ("mixed text", text_lines(args.lines), "bare line iteration", iterate_lines),
        (
            "wire via a terminal",
            wire.replace(b"\n", b"\r\n"),
            "json.loads per line",
            json_loads_each,
        ),
    ):
        n_lines = data.count(b"\n")
        mb = len(data) / 1e6
        t_base, t_parse = measure(baseline, parse_all, data, args.repeat)
        rows = parse_all(data)
        print(f"{name}: {n_lines} lines, {mb:.1f} MB -> {rows} rows")
        print(f"  {baseline_name:22s} {n_lines / t_base:12,.0f} lines/s {mb / t_base:8.1f} MB/s")
        print(
            f"  {'framer+parser':22s} {n_lines / t_parse:12,.0f} lines/s {mb / t_parse:8.1f} MB/s"
        )
        print(f"  ratio (parser/baseline speed): {t_base / t_parse:.3f}")


if __name__ == "__main__":
    main()
