"""Drop rules: regular expressions on Message (``--drop-message``) or LoggerName (``--drop-logger``).

A rule matches anywhere in the text (``re.search``); anchor it with ``^``/``$``
to match whole values. Rules apply to every level: they are an explicit wish.
Each rule's drops are counted separately, so the summary shows which rule
removed what.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from hal_logging.pipeline.filters.levels import FilterConfigError
from hal_logging.pipeline.model import Filter, Record


def _compile(patterns: Sequence[str], flag: str) -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for pattern in patterns:
        try:
            out.append((pattern, re.compile(pattern)))
        except re.error as err:
            raise FilterConfigError(
                f"{flag} {pattern!r} is not a valid regular expression ({err}); "
                "escape special characters with a backslash or quote the pattern"
            ) from err
    return out


class DropFilter(Filter):
    """Stats: ``dropped``, and ``message:<rule>`` / ``logger:<rule>`` per rule."""

    name = "drop"

    def __init__(self, messages: Sequence[str], loggers: Sequence[str]) -> None:
        super().__init__()
        self.messages = _compile(messages, "--drop-message")
        self.loggers = _compile(loggers, "--drop-logger")

    def process(self, record: Record) -> Iterable[Record]:
        row = record.row
        logger = row.get("LoggerName")
        if isinstance(logger, str):
            for text, rx in self.loggers:
                if rx.search(logger):
                    return self._drop(f"logger:{text}")
        message = row.get("Message")
        if isinstance(message, str):
            for text, rx in self.messages:
                if rx.search(message):
                    return self._drop(f"message:{text}")
        return (record,)

    def _drop(self, rule: str) -> tuple[Record, ...]:
        self.count("dropped")
        self.count(rule)
        return ()
