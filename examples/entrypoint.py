#!/usr/bin/env python3
"""A realistic HAL agent container entrypoint, with hal-logging (the seed's Part 3).

What a benchmark container does, in miniature: read its context from the
environment (``HAL_RUN_ID``, ``HAL_TASK_ID``, ... passed with ``docker run -e``),
run an agent loop that calls tools and a model, print things the way agents
do, draw a progress bar, survive a failing tool, and exit with a status that
says whether the task succeeded. No network is used; the "model" is a stub.

Run it::

    HAL_RUN_ID=run-1 HAL_TASK_ID=task-7 python examples/entrypoint.py          # exit 0
    python examples/entrypoint.py --fail                                         # exit 1
    python examples/entrypoint.py | hal-logging-forward --run-id run-1 -- ...   # on the VM

stdout then carries one JSON row per log record (plus the plain ``print()``
lines, in order); stderr carries the progress bar. ``HAL_LOG_FORMAT=console``
shows readable lines instead.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import hal_logging
from hal_logging.context import full_context

log = hal_logging.get_logger("agent")


class ToolError(RuntimeError):
    """A tool the agent called failed."""


def progress(items: Iterable[Any], total: int, desc: str) -> Iterator[Any]:
    """A progress bar on stderr: tqdm when installed, else a hand-drawn ``\\r`` bar."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, file=sys.stderr, mininterval=0)
        return
    for i, item in enumerate(items, 1):
        filled = int(20 * i / total)
        sys.stderr.write(f"\r{desc}: [{'#' * filled}{'.' * (20 - filled)}] {i}/{total}")
        sys.stderr.flush()
        yield item
    sys.stderr.write("\n")


def call_model(step: int, rng: random.Random) -> dict[str, Any]:
    """Stand-in for an LLM call: returns an 'action' and a token count."""
    action = ["read_file", "run_tests", "edit_file", "submit"][min(step, 3)]
    return {"action": action, "tokens": rng.randint(200, 2000)}


def run_tool(action: str, step: int) -> str:
    if action == "run_tests" and step == 1:
        try:
            open("/nonexistent/hal-logging-example/tests.log")
        except OSError as err:
            raise ToolError(f"tool {action!r} failed at step {step}") from err
    return f"{action}: ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Example agent container entrypoint.")
    parser.add_argument("--steps", type=int, default=4, help="agent steps (default 4)")
    parser.add_argument(
        "--fail",
        action="store_true",
        default=os.environ.get("EXAMPLE_FAIL") == "1",
        help="end with a failed task and exit 1 (also EXAMPLE_FAIL=1)",
    )
    args = parser.parse_args(argv)

    hal_logging.configure()
    ctx = full_context()  # the same values configure() put in every row's columns
    log.info(
        "container started: run %s, task %s, agent %s",
        ctx["RunID"] or "?",
        ctx["TaskID"] or "?",
        ctx["AgentName"] or "?",
        extra={"argv": sys.argv[1:], "pid": os.getpid()},
    )
    print(f"python {sys.version.split()[0]} on {sys.platform}")  # agents print; it still arrives

    rng = random.Random(7)
    total_tokens = 0
    for step in progress(range(args.steps), total=args.steps, desc="agent steps"):
        with hal_logging.bind(step=step):
            reply = call_model(step, rng)
            total_tokens += reply["tokens"]
            log.info("model replied", extra={"action": reply["action"], "tokens": reply["tokens"]})
            try:
                result = run_tool(reply["action"], step)
            except ToolError:
                log.warning("tool failed, the agent will retry", exc_info=True)
                continue
            print(f"[step {step}] {result}")
            log.debug("tool output", extra={"output": result})

    log.info(
        "agent finished",
        extra={"tokens": total_tokens, "cost_usd": round(total_tokens * 2.5e-6, 6)},
    )
    if args.fail:
        log.error("task failed: the answer did not pass the checker", extra={"score": 0.0})
        return 1
    log.info("task succeeded", extra={"score": 1.0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
