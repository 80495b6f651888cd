"""Redaction cost: the filter on typical container output, against parsing the same lines.

Run: ``.venv/bin/python benchmarks/redact.py [N]`` (default 100,000 lines).

Lines are a typical agent mix: wire rows from ``configure()`` with a few
fields, plain prints, Weave/HTTP links (they hit the ``://`` trigger and take
the slow path), token/cost lines, a progress bar, and 1% lines holding a
secret. Both timings are taken in the same run: baseline = framing-free
parse of every line (``Parser.feed``) plus the row serialisation the
batcher does anyway; then the same plus :class:`RedactFilter` with a few
known env values; and the same with the stdlib pre-check instead of
Aho-Corasick. The figure to read is the ratio, not the seconds.
"""

from __future__ import annotations

import sys
import time

from hal_logging import _json
from hal_logging.pipeline.filters.redact import RedactFilter
from hal_logging.pipeline.model import Line
from hal_logging.pipeline.parsing import Parser
from hal_logging.redaction import Redactor

KEY = "sk-proj-" + "Zq8xW3vB7nM2kL9pQ4rT6yU1iO5aS0dF"


def lines(n: int) -> list[bytes]:
    wire = (
        '{"_hal":1,"TimeGenerated":"2024-05-01T12:00:00.000000Z","Level":"INFO","Message":"step %d: calling tool bash",'
        '"LoggerName":"agent.loop","RunID":"r","TaskID":"t","Benchmark":"b","AgentName":"a","VMName":"","ExecutionMode":"",'
        '"ExecutedBy":"","LogType":"AgentLog","Properties":{"step":%d,"tool":"bash","args":["ls","-la"],"src":"loop:run:42"}}'
    )
    kinds = [
        lambda i: (wire % (i, i)).encode(),
        lambda i: f"Thinking about the next action for item {i} of the plan".encode(),
        lambda i: (
            f'INFO:httpx:HTTP Request: POST https://api.openai.com/v1/chat/completions "HTTP/1.1 200 OK" {i}'.encode()
        ),
        lambda i: f"🍩 https://wandb.ai/team/proj/r/call/{i:08x}".encode(),
        lambda i: f"tokens: prompt={i % 900} completion=57 total cost $0.0{i % 10}".encode(),
        lambda i: f" {i % 100}%|████▌     | {i % 100}/100 [00:04<00:05, 10.1it/s]".encode(),
        lambda i: (wire % (i, i)).encode(),
        lambda i: f"Observation: file {i}.py has 120 lines".encode(),
    ]
    out = []
    for i in range(n):
        if i % 100 == 99:
            out.append(f"auth header: Authorization: Bearer {KEY}".encode())
        else:
            out.append(kinds[i % len(kinds)](i))
    return out


def run(data: list[bytes], redact: bool, fast: bool = True) -> float:
    parser = Parser(stream="stdout", source="bench", trusted={"RunID": "r", "TaskID": "t"})
    flt = RedactFilter(
        Redactor(
            {KEY: "OPENAI_API_KEY", "hf_abcdefghijklmnop": "HF_TOKEN", "p4ssw0rd!!": "DB_PASSWORD"},
            fast=fast,
        ),
        {"RunID": "r", "TaskID": "t"},
    )
    dumps = _json.dumps
    offset = 0
    t0 = time.perf_counter()
    for raw in data:
        end = offset + len(raw) + 1
        for rec in parser.feed(Line(raw, "stdout", offset, end, 0.0)):
            if redact:
                flt.process(rec)
            dumps(rec.row)
        offset = end
    for rec in parser.finish():
        dumps(rec.row)
    elapsed = time.perf_counter() - t0
    if redact:
        assert flt.stats.get("rows_redacted", 0) >= len(data) // 100 - 1, flt.stats
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    data = lines(n)
    run(data[:2000], True)  # warm-up
    # Interleaved rounds, best of each: a busy machine slows both sides alike.
    base, red, slow = [], [], []
    for _ in range(4):
        base.append(run(data, False))
        red.append(run(data, True))
        slow.append(run(data, True, fast=False))
    b, r, s = min(base), min(red), min(slow)
    print(
        f"{n} lines: parse+serialise {b / n * 1e6:.2f} us/row; with redaction {r / n * 1e6:.2f} us/row"
    )
    print(f"redaction adds {(r - b) / n * 1e6:.2f} us/row = {r / b:.2f}x the baseline")
    print(f"without ahocorasick_rs (stdlib pre-check): {s / b:.2f}x the baseline")


if __name__ == "__main__":
    main()
