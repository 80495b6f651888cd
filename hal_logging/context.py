"""Run context: which run, task, benchmark, agent and VM a row belongs to.

Read from the environment (CONTRACT §3) on both sides. Inside the container
these are what the harness passed with ``-e``; on the VM the forwarder's flags
and environment are the *trusted* values (the container runs an AI agent and
may claim anything).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hal_logging.schema import CONTEXT_COLUMNS, LOG_TYPE_AGENT


def context_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Context columns found in the environment, only those set and non-empty."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for col in CONTEXT_COLUMNS:
        assert col.env is not None
        value = env.get(col.env, "")
        if value:
            out[col.name] = value
    return out


def full_context(
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    default_log_type: str = LOG_TYPE_AGENT,
) -> dict[str, str]:
    """Every context column: overrides (non-None) over the environment, '' when unknown."""
    ctx = {col.name: "" for col in CONTEXT_COLUMNS}
    ctx["LogType"] = default_log_type
    ctx.update(context_from_env(environ))
    if overrides:
        ctx.update({k: v for k, v in overrides.items() if v is not None})
    return ctx
