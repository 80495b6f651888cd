"""Filters between parsing and batching: redaction first, then cost control.

:func:`build_filters` is the one entry point the forwarder calls. The chain,
in the order every record passes through it:

1. :class:`~.redact.RedactFilter` (on by default, ``--no-redact`` to turn off):
   secrets never leave the VM, whatever the sink.
2. :class:`~.levels.LevelFilter`: ``--logger-level NAME=LEVEL``, ``--min-level``.
3. :class:`~.drop.DropFilter`: ``--drop-message REGEX``, ``--drop-logger REGEX``.
4. :class:`~.sample.SampleFilter`: ``--sample LOGGER=RATE`` (WARNING+ always kept).
5. :class:`~.fold.FoldFilter`: identical consecutive rows -> first + "repeated N times".
6. :class:`~.budget.BudgetFilter`: ``--task-byte-budget BYTES``.

Cheap decisions run before expensive ones, and folding and the budget see only
rows that survived the rules before them (the budget counts shipped bytes).
Every filter counts what it drops in its ``stats``; nothing is dropped silently.
A setting that cannot be used raises :class:`FilterConfigError` (a ValueError)
whose message says what to write instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.filters.budget import BudgetFilter
from hal_logging.pipeline.filters.drop import DropFilter
from hal_logging.pipeline.filters.fold import FoldFilter
from hal_logging.pipeline.filters.levels import FilterConfigError, LevelFilter
from hal_logging.pipeline.filters.redact import RedactFilter
from hal_logging.pipeline.filters.sample import SampleFilter
from hal_logging.pipeline.model import Filter
from hal_logging.pipeline.settings import FiltersConfig
from hal_logging.redaction import Redactor, plan_env_values

#: Comma-separated variable names to redact, in addition to ``--redact-env``.
REDACT_ENV_VAR = "HAL_LOGGING_REDACT_ENV"

__all__ = [
    "REDACT_ENV_VAR",
    "BudgetFilter",
    "DropFilter",
    "FilterConfigError",
    "FoldFilter",
    "LevelFilter",
    "RedactFilter",
    "Redactor",
    "SampleFilter",
    "build_filters",
    "make_redact_filter",
]


def _own(config: ForwardConfig | FiltersConfig) -> FiltersConfig:
    """The filters' own settings (callers may hand over the whole run's config)."""
    return config.filters if isinstance(config, ForwardConfig) else config


def make_redact_filter(
    config: ForwardConfig | FiltersConfig,
    trusted: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> RedactFilter:
    """The redaction filter for ``config`` (values from ``environ``, default ``os.environ``).

    ``RedactFilter.notes`` says, in plain lines, which named variables were not
    set and which values were too short to redact, for the forwarder to print.
    """
    config = _own(config)
    env = os.environ if environ is None else environ
    named = list(config.redact_env)
    named += [n for n in env.get(REDACT_ENV_VAR, "").split(",") if n.strip()]
    plan = plan_env_values(
        named,
        environ=env,
        command_env=config.command_env,
        secret_names=config.redact_secret_env_names,
    )
    flt = RedactFilter(Redactor(plan.values), trusted)
    if plan.missing:
        flt.notes.append(
            "redaction: variable(s) named for redaction but not set: " + ", ".join(plan.missing)
        )
    if plan.skipped_short:
        flt.notes.append(
            "redaction: value(s) too short to redact safely (under 8 characters, or 4 when named): "
            + ", ".join(plan.skipped_short)
        )
    return flt


def build_filters(
    config: ForwardConfig | FiltersConfig, trusted: Mapping[str, str]
) -> list[Filter]:
    """The filter chain for a forwarder run, in the order records pass through it.

    ``trusted``: the context columns the VM side knows (never rewritten by
    redaction). Raises :class:`FilterConfigError` for an unusable setting.
    """
    config = _own(config)
    chain: list[Filter] = []
    if config.redact:
        chain.append(make_redact_filter(config, trusted))
    if config.min_level is not None or config.logger_levels:
        chain.append(LevelFilter(config.min_level, config.logger_levels))
    if config.drop_message or config.drop_logger:
        chain.append(DropFilter(config.drop_message, config.drop_logger))
    if config.sample:
        chain.append(SampleFilter(config.sample))
    if config.fold_repeats:
        chain.append(FoldFilter())
    if config.task_byte_budget is not None:
        chain.append(BudgetFilter(config.task_byte_budget))
    return chain
