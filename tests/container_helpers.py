"""Helpers for the container-side tests (issue 2): strict JSON, real subprocesses."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from hal_logging import JsonFormatter
from hal_logging.formatter import StdoutHandler
from hal_logging.schema import COLUMN_NAMES, WIRE_PREFIX

ROOT = Path(__file__).resolve().parents[1]
WIRE_KEYS = ["_hal", *COLUMN_NAMES]


def _no_constants(name: str) -> Any:
    raise ValueError(f"not strict JSON: bare {name}")


def strict_loads(line: str | bytes) -> dict[str, Any]:
    """json.loads that refuses NaN/Infinity, and requires an object."""
    value = json.loads(line, parse_constant=_no_constants)
    assert isinstance(value, dict), line
    return value


def wire_row(line: str) -> dict[str, Any]:
    """Check one wire line (prefix, exact keys in order) and return the row."""
    assert line.encode("utf-8").startswith(WIRE_PREFIX), line[:80]
    assert "\n" not in line
    row = strict_loads(line)
    assert list(row) == WIRE_KEYS, list(row)
    return row


def wire_rows(text: str) -> list[dict[str, Any]]:
    """All wire lines of an output (other lines are ignored)."""
    return [wire_row(line) for line in text.split("\n") if line.startswith('{"_hal"')]


class Captured:
    """A logger wired to StdoutHandler + JsonFormatter, writing into a StringIO."""

    def __init__(self, logger: logging.Logger, buffer: io.StringIO) -> None:
        self.logger = logger
        self.buffer = buffer

    def lines(self) -> list[str]:
        text = self.buffer.getvalue()
        assert text == "" or text.endswith("\n")
        return text.split("\n")[:-1]

    def rows(self) -> list[dict[str, Any]]:
        return [wire_row(line) for line in self.lines()]

    def one(self) -> dict[str, Any]:
        rows = self.rows()
        assert len(rows) == 1, rows
        return rows[0]

    def clear(self) -> None:
        self.buffer.seek(0)
        self.buffer.truncate()


@contextmanager
def captured(
    name: str = "test.container",
    context: Mapping[str, str] | None = None,
    formatter: logging.Formatter | None = None,
) -> Iterator[Captured]:
    """A fresh non-propagating logger whose records land in a StringIO (via sys.stdout)."""
    logger = logging.getLogger(name)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler = StdoutHandler()
    handler.setFormatter(formatter or JsonFormatter(context=context or {}))
    logger.handlers[:] = [handler]
    logger.setLevel(1)  # everything, custom levels below DEBUG included
    logger.propagate = False
    buffer = io.StringIO()
    try:
        with redirect_stdout(buffer):
            yield Captured(logger, buffer)
    finally:
        logger.handlers[:], level, logger.propagate = saved[0], saved[1], saved[2]
        logger.setLevel(level)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any HAL_*/context/OTel/format variable, plus ``extra``."""
    drop = ("HAL_", "EXECUTED_BY", "OTEL_", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run_python(
    code: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with stdout and stderr as pipes."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="strict",
        env=dict(env) if env is not None else clean_env(),
        timeout=timeout,
        cwd=ROOT,
    )
