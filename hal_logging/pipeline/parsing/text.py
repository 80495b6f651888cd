"""Plain text lines: the level and time a human-readable line carries.

Recognised, in this order (the first that matches wins):

1. ``logging.basicConfig``'s default ``LEVEL:logger:message`` -> split into parts
   (format ``text:logging``);
2. the seed's ``%(asctime)s - %(name)s - %(levelname)s - %(message)s`` -> split
   (format ``text:logging``);
3. anything else (format ``text``): a leading timestamp (``2024-05-01 12:00:00,123``,
   ISO 8601, optionally in brackets) gives the time; the level is the first of
   ``[ERROR]``/``ERROR``/``error:``/``Warning:`` at the start, ``level=error``
   (logfmt), an upper-case level word in the first 64 characters (loguru's
   ``| ERROR    |``, ``[WARN]``...), or a Python warning (``file.py:3: UserWarning:``);
   else INFO. The Message keeps the whole line: when the layout is not known
   for sure, cutting it could lose words.

In the split layouts the logger name goes to ``Properties.logger`` (LoggerName
stays ``docker.stdout``/``docker.stderr``/``docker``, docs/contract.md §1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from hal_logging.pipeline.parsing.levels import ALIASES
from hal_logging.pipeline.parsing.timestamps import ISO_RE, from_match

_LV: Final = "DEBUG|INFO|WARNING|ERROR|CRITICAL"
_BASIC_RE: Final = re.compile(rf"({_LV}):([^:\s]*):(.*)", re.S)
_SEED_RE: Final = re.compile(
    rf"(\d{{4}}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?) - (\S[^\n]*?) - ({_LV}) - (.*)", re.S
)
_LEAD_TS_RE: Final = re.compile(r"\[?\s*" + ISO_RE.pattern + r"\s*\]?[\s:|,-]*")
_WORDS: Final = (
    "debug|info|information|notice|warning|warn|error|err|critical|crit|fatal|trace|success|panic"
)
_BRACKET_RE: Final = re.compile(rf"[\[<(]\s*({_WORDS})\s*[\]>)]", re.I)
_COLON_RE: Final = re.compile(rf"({_WORDS})\s*:", re.I)
_LOGFMT_RE: Final = re.compile(rf"\b(?:level|lvl|severity)\s*[=:]\s*\"?({_WORDS})\b", re.I)
_TOKEN_RE: Final = re.compile(
    r"(?<![\w.-])(DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE|SUCCESS)(?![\w-])"
)
_PYWARN_RE: Final = re.compile(r"\S+:\d+: (?:\w+\.)*\w*Warning: ")


@dataclass(slots=True)
class TextInfo:
    level: str
    message: str
    time: str | None = None
    logger: str | None = None
    fmt: str = "text"


def parse_text(text: str) -> TextInfo:
    """Level, time, logger and message of one visible text line."""
    c0 = text[:1]
    if c0.isupper():
        m = _BASIC_RE.match(text)
        if m:
            return TextInfo(m.group(1), m.group(3), None, m.group(2), "text:logging")
    if c0.isdigit() or c0 == "[":
        m = _SEED_RE.match(text)
        if m:
            tm = ISO_RE.match(m.group(1))
            when = from_match(tm) if tm else None
            return TextInfo(m.group(3), m.group(4), when, m.group(2), "text:logging")
        lead = _LEAD_TS_RE.match(text)
        if lead:
            when = from_match(ISO_RE.match(lead.group(0).lstrip("[ ")) or _never())
            return TextInfo(_level(text[lead.end() :]), text, when)
    return TextInfo(_level(text), text)


def _never() -> re.Match[str]:  # pragma: no cover - the lead regex implies an ISO match
    raise AssertionError("timestamp regex mismatch")


def _level(rest: str) -> str:
    m = _BRACKET_RE.match(rest) or _COLON_RE.match(rest)
    if m:
        return ALIASES[m.group(1).lower()]
    head = rest[:64]
    m = _TOKEN_RE.search(head)
    if m:
        return ALIASES[m.group(1).lower()]
    if "=" in head or ":" in head:
        m = _LOGFMT_RE.search(head)
        if m:
            return ALIASES[m.group(1).lower()]
    if "Warning: " in rest and _PYWARN_RE.match(rest):
        return "WARNING"
    return "INFO"
