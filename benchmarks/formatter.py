"""How much a log record costs to format: stdlib text vs python-json-logger vs ours.

Run: ``.venv/bin/python benchmarks/formatter.py`` (about 10-20 s).

Each formatter formats the same pre-built LogRecord many times (the record is
made once, so only ``format()`` is measured; an exception record has its
cached ``exc_text`` cleared each time, as a fresh record would). Timings are
the best of several rounds, in µs per record, and the goals of issue 2 are
printed as ratios measured in this same run:

- ours ≤ 1.5x the stdlib text formatter on a plain message;
- ours ≥ 2x faster than python-json-logger's JsonFormatter (plain and extras).

The exception case is printed for information: all three spend nearly all
their time in Python's own traceback rendering (``traceback.format_exception``,
with 3.11's caret lines), which we keep verbatim, so its ratios stay near 1x.

``ours`` is hal_logging.JsonFormatter as configure() sets it up (with
``Properties.src``); ``ours-nosrc`` is the same without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import timeit
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter as PjlJsonFormatter

from hal_logging import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT = {
    "RunID": "run-20240501-abc",
    "TaskID": "task-0042",
    "Benchmark": "corebench_hard",
    "AgentName": "react-gpt4o",
    "VMName": "hal-vm-07",
    "ExecutionMode": "docker",
    "ExecutedBy": "alice",
    "LogType": "AgentLog",
}


def make_record(case: str) -> logging.LogRecord:
    exc_info = None
    if case == "exception":
        try:
            try:
                dict[str, int]()["missing"]
            except KeyError as err:
                raise ValueError("could not parse the answer") from err
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "agent.loop",
        logging.INFO,
        "/app/agent/loop.py",
        128,
        "step %d finished" if case != "plain" else "step finished",
        (3,) if case != "plain" else None,
        exc_info,
        func="run_step",
    )
    if case == "extras":
        record.__dict__.update(step=3, tokens=812, model="gpt-4o", cost_usd=0.0123, tool="bash")
    return record


def timed(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def end_to_end(number: int, repeat: int) -> None:
    """A whole ``logger.info()`` call, written and flushed to /dev/null.

    stdlib: StreamHandler + text format (what ``basicConfig`` gives; it, too,
    flushes after every record). Ours: configure()'s StdoutHandler on a
    line-buffered stdout (as configure() sets it, so print() is flushed per
    line too). Both pay one write() system call per record, which dominates.
    """
    from hal_logging.formatter import StdoutHandler

    with open(os.devnull, "w", encoding="utf-8") as sink:
        text_logger = logging.getLogger("bench.text")
        text_logger.propagate = False
        text_logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        text_logger.addHandler(handler)

        ours_logger = logging.getLogger("bench.ours")
        ours_logger.propagate = False
        ours_logger.setLevel(logging.INFO)
        ours = StdoutHandler()
        ours.setFormatter(JsonFormatter(context=CONTEXT))
        ours_logger.addHandler(ours)

        text_us = timed(lambda: text_logger.info("step %d finished", 3), number, repeat)
        saved = sys.stdout
        sys.stdout = open(os.devnull, "w", encoding="utf-8", buffering=1)
        try:
            ours_us = timed(lambda: ours_logger.info("step %d finished", 3), number, repeat)
        finally:
            sys.stdout.close()
            sys.stdout = saved
    print("end to end, logger.info() to /dev/null (µs per call):")
    print(f"  stdlib StreamHandler + text  {text_us:6.2f}")
    print(
        f"  configure()'s handler        {ours_us:6.2f}   ({ours_us / text_us:.2f}x; both flush per record)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="records per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the best one counts)")
    args = parser.parse_args(argv)

    formatters: dict[str, logging.Formatter] = {
        "stdlib-text": logging.Formatter(TEXT_FORMAT),
        "python-json-logger": PjlJsonFormatter(TEXT_FORMAT),
        "ours": JsonFormatter(context=CONTEXT),
        "ours-nosrc": JsonFormatter(context=CONTEXT, source=False),
    }
    cases = ("plain", "extras", "exception")
    results: dict[tuple[str, str], float] = {}
    print(f"µs per record (best of {args.repeat} x {args.number}), Python {sys.version.split()[0]}")
    print(f"{'':20}" + "".join(f"{c:>12}" for c in cases))
    for name, fmt in formatters.items():
        row = []
        for case in cases:
            record = make_record(case)
            number = args.number if case != "exception" else max(1, args.number // 10)
            if case == "exception":

                def run(fmt: logging.Formatter = fmt, record: logging.LogRecord = record) -> None:
                    record.exc_text = None
                    fmt.format(record)
            else:

                def run(fmt: logging.Formatter = fmt, record: logging.LogRecord = record) -> None:
                    fmt.format(record)

            results[name, case] = us = timed(run, number, args.repeat)
            row.append(us)
        print(f"{name:20}" + "".join(f"{us:12.2f}" for us in row))

    print()
    end_to_end(args.number, args.repeat)

    print()
    print("ratios (same run):")
    ok = True
    for case in cases:
        vs_text = results["ours", case] / results["stdlib-text", case]
        speedup = results["python-json-logger", case] / results["ours", case]
        print(
            f"  {case:10} ours/stdlib-text = {vs_text:5.2f}x   python-json-logger/ours = {speedup:5.2f}x"
        )
    plain_text = results["ours", "plain"] / results["stdlib-text", "plain"]
    plain_pjl = results["python-json-logger", "plain"] / results["ours", "plain"]
    goal1 = plain_text <= 1.5
    goal2 = all(results["python-json-logger", c] / results["ours", c] >= 2 for c in cases[:2])
    ok = goal1 and goal2
    print(
        f"goal: plain ours ≤ 1.5x stdlib text: {plain_text:.2f}x -> {'met' if goal1 else 'MISSED'}"
    )
    print(
        f"goal: ours ≥ 2x faster than python-json-logger (plain {plain_pjl:.2f}x, plain and extras): "
        f"{'met' if goal2 else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
