"""The benchmarks' input: wire lines as an agent container writes them.

Written by the real ``hal_logging.JsonFormatter`` (so the forwarder sees exactly
what ``configure()`` produces): a step log line with a few fields per model
call, and a retried tool call every 50 lines at WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path


def write_agent_lines(
    path: Path,
    n: int,
    *,
    start: int = 0,
    observation: bool = False,
    context: Mapping[str, str] | None = None,
) -> None:
    """Append ``n`` wire lines (numbered from ``start``) to ``path``.

    ``observation`` adds a variable-length text field (rows of ~330 to ~450 bytes
    instead of ~300), as the Azure benchmark uses. ``context`` gives the
    context columns the lines carry (default: the environment's, as
    ``configure()`` does), e.g. ``{"RunID": "bench"}`` for lines that claim a run.
    """
    from hal_logging.formatter import JsonFormatter

    logger = logging.getLogger(f"bench.agent.{start}.{observation}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    with path.open("a", encoding="utf-8") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(JsonFormatter(context=context))
        logger.addHandler(handler)
        try:
            for i in range(start, start + n):
                if i % 50 == 0:
                    logger.warning(
                        "tool call %d failed, retrying: HTTP 429 from the model endpoint",
                        i,
                        extra={"attempt": i % 3, "tool": "run_tests"},
                    )
                    continue
                extra: dict[str, object] = {
                    "step": i,
                    "tokens": 200 + i % 1800,
                    "cost_usd": round(i * 1e-6, 6),
                    "model": "gpt-4o-mini",
                }
                if observation:
                    extra["observation"] = "ok " * (i % 40)
                logger.info(
                    "step %d: model replied with %d tokens, action=%s",
                    i,
                    200 + i % 1800,
                    ("read_file", "edit_file", "run_tests")[i % 3],
                    extra=extra,
                )
        finally:
            logger.removeHandler(handler)
