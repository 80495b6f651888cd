"""Which literal values to redact: the environment variables' values (see
:mod:`hal_logging.redaction` for the rules), gathered once at start."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hal_logging.redaction.patterns import (
    MIN_AUTO_VALUE,
    MIN_NAMED_VALUE,
    NEVER_SECRET,
    looks_secret,
)


@dataclass
class RedactionPlan:
    """Which literal values to redact, and why each was or was not included."""

    values: dict[str, str] = field(default_factory=dict)  # value -> variable name
    skipped_short: list[str] = field(default_factory=list)  # names whose value was too short
    missing: list[str] = field(default_factory=list)  # named variables that are not set


def plan_env_values(
    named: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    command_env: Mapping[str, str] | None = None,
    secret_names: bool = True,
) -> RedactionPlan:
    """Collect the literal values to redact (see the module docstring for the rules).

    ``named``: variables asked for explicitly; looked up in ``command_env``
    first, then ``environ`` (default ``os.environ``). ``command_env``: wrap
    mode's ``-e NAME=VALUE`` pairs, all redacted except the run context.
    ``secret_names``: also every variable whose name looks secret.
    """
    env = os.environ if environ is None else environ
    cmd = command_env or {}
    plan = RedactionPlan()

    def add(name: str, value: str | None, minimum: int) -> None:
        if not value or not value.strip():
            return
        if len(value) < minimum:
            if name not in plan.skipped_short:
                plan.skipped_short.append(name)
            return
        plan.values.setdefault(value, name)

    for name in named:
        name = name.strip()
        if not name:
            continue
        value = cmd.get(name, env.get(name))
        if value is None:
            plan.missing.append(name)
        add(name, value, MIN_NAMED_VALUE)
    for name, value in cmd.items():
        if name not in NEVER_SECRET:
            add(name, value, MIN_AUTO_VALUE)
    if secret_names:
        for name, value in env.items():
            if looks_secret(name):
                add(name, value, MIN_AUTO_VALUE)
    return plan
