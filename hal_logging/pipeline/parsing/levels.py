"""Levels: whatever a logger called it -> one of schema.LEVELS.

The table accepts exactly DEBUG, INFO, WARNING, ERROR, CRITICAL (docs/contract.md §1).
Names from other ecosystems (warn, fatal, notice, trace, success...) are mapped;
numbers are read as Python's ``levelno``; anything else is INFO, and the caller
keeps the original value under ``Properties.hal.original_level``.
"""

from __future__ import annotations

from typing import Final

from hal_logging.schema import LEVELS

LEVEL_SET: Final = frozenset(LEVELS)

ALIASES: Final[dict[str, str]] = {
    "debug": "DEBUG",
    "trace": "DEBUG",
    "verbose": "DEBUG",
    "notset": "DEBUG",
    "dbg": "DEBUG",
    "info": "INFO",
    "information": "INFO",
    "informational": "INFO",
    "notice": "INFO",
    "success": "INFO",
    "inf": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "wrn": "WARNING",
    "error": "ERROR",
    "err": "ERROR",
    "exception": "ERROR",
    "erro": "ERROR",
    "critical": "CRITICAL",
    "crit": "CRITICAL",
    "fatal": "CRITICAL",
    "alert": "CRITICAL",
    "emerg": "CRITICAL",
    "emergency": "CRITICAL",
    "panic": "CRITICAL",
    "crt": "CRITICAL",
}


def from_number(n: float) -> str:
    """Python ``levelno`` -> name (custom levels fall into the band below them)."""
    if n >= 50:
        return "CRITICAL"
    if n >= 40:
        return "ERROR"
    if n >= 30:
        return "WARNING"
    if n >= 20:
        return "INFO"
    return "DEBUG"


def normalize_level(value: object) -> tuple[str, bool]:
    """(level, exact): ``exact`` is False when the value had to be mapped."""
    if type(value) is str:
        if value in LEVEL_SET:
            return value, True
        mapped = ALIASES.get(value.strip().lower())
        if mapped is not None:
            return mapped, False
        try:
            return from_number(float(value)), False
        except ValueError:
            return "INFO", False
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return from_number(value), False
    return "INFO", False
