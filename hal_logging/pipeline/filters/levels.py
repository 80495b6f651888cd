"""Level thresholds: ``--min-level`` and per-logger levels (``--logger-level httpx=WARNING``).

A per-logger level applies to that logger and its children in the dotted
hierarchy, as in :mod:`logging` (``httpx`` covers ``httpx._client`` but not
``httpxyz``); the longest matching prefix wins, and a per-logger level wins
over ``--min-level`` in both directions, so ``--min-level WARNING
--logger-level agent=DEBUG`` keeps the agent's DEBUG rows. ``*`` names every
logger (same as ``--min-level``).

Also the helpers the other cost rules share: :func:`parse_level` and
:class:`LoggerMap` (the same prefix rule for ``--sample``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import LEVEL_NUMBERS, LEVELS

T = TypeVar("T")

_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR", "CRIT": "CRITICAL"}
WARNING = LEVEL_NUMBERS["WARNING"]


class FilterConfigError(ValueError):
    """A filter setting cannot be used; the message says which and what is expected."""


def parse_level(value: str | int, what: str = "level") -> int:
    """``"warning"``, ``"WARN"``, ``30`` -> 30. Raises FilterConfigError otherwise."""
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    text = _ALIASES.get(text, text)
    if text in LEVEL_NUMBERS:
        return LEVEL_NUMBERS[text]
    raise FilterConfigError(
        f"{what}: {value!r} is not a level; use one of {', '.join(LEVELS)} (or a number)"
    )


def level_of(row: Mapping[str, object]) -> int:
    """The row's level as a number; an unknown Level counts as INFO (never dropped as DEBUG)."""
    level = row.get("Level")
    return LEVEL_NUMBERS.get(level, 20) if isinstance(level, str) else 20


class LoggerMap(Generic[T]):
    """Logger name -> setting, by the longest matching prefix in the dotted hierarchy.

    Results are cached per logger name (there are few distinct names).
    """

    def __init__(self, settings: Mapping[str, T], default: T | None = None) -> None:
        self.default = settings.get("*", default)
        self._exact = {k.strip(): v for k, v in settings.items() if k.strip() not in ("*", "")}
        self._cache: dict[str, T | None] = {}

    def __bool__(self) -> bool:
        return bool(self._exact) or self.default is not None

    def get(self, logger: str) -> T | None:
        try:
            return self._cache[logger]
        except KeyError:
            pass
        found = self.default
        name = logger
        while True:
            if name in self._exact:
                found = self._exact[name]
                break
            cut = name.rfind(".")
            if cut < 0:
                break
            name = name[:cut]
        if len(self._cache) < 10_000:
            self._cache[logger] = found
        return found


class LevelFilter(Filter):
    """Drops rows below their logger's level. Stats: ``dropped``, ``dropped:<LEVEL>``."""

    name = "levels"

    def __init__(self, min_level: str | int | None, logger_levels: Mapping[str, str | int]) -> None:
        super().__init__()
        default = parse_level(min_level, "--min-level") if min_level is not None else None
        parsed = {
            name: parse_level(level, f"--logger-level {name}")
            for name, level in logger_levels.items()
        }
        self.levels: LoggerMap[int] = LoggerMap(parsed, default)

    def process(self, record: Record) -> Iterable[Record]:
        row = record.row
        logger = row.get("LoggerName")
        threshold = self.levels.get(logger if isinstance(logger, str) else "")
        if threshold is not None and level_of(row) < threshold:
            self.count("dropped")
            self.count(f"dropped:{row.get('Level')}")
            return ()
        return (record,)
