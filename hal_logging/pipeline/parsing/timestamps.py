"""Times: anything a log line may carry -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC).

The table wants one shape (docs/contract.md §1), so every time is normalised here:
ISO 8601 with ``T`` or a space, ``,`` or ``.`` before a fraction of any length
(docker's 9 digits are cut to 6), ``Z``/offset/none (none = UTC: containers run
in UTC unless told otherwise), and epoch numbers in s, ms, µs or ns (told apart
by magnitude). What cannot be understood returns ``None`` and the caller falls
back to the time the line was read.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1)

#: An ISO-like date-time at the start of a string (search with .match).
ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:\s?(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?"
)


def format_epoch(ts: float) -> str:
    """An epoch time in seconds as the canonical string."""
    try:
        dt = _EPOCH + timedelta(microseconds=round(ts * 1_000_000))
    except (OverflowError, ValueError):
        dt = _EPOCH
    return dt.isoformat(timespec="microseconds") + "Z"


# The last two ``YYYY-MM-DDTHH:MM:SS`` canonical() accepted. Two: a Docker
# json-file line has two times (the daemon's and the wire row's), checked in
# turn; with one remembered, each evicted the other and every line validated
# both (measured: 23% of the forwarder's CPU on a json-file log of wire lines).
_last_head = ""
_prev_head = ""


def _valid_head(head: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS``: ASCII digits, a real date, a valid time of day."""
    if (
        head[4] != "-"
        or head[7] != "-"
        or head[10] != "T"
        or head[13] != ":"
        or head[16] != ":"
        or not head.isascii()
    ):
        return False
    digits = head[:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16] + head[17:19]
    if not digits.isdigit():
        return False
    try:
        datetime(
            int(head[:4]),
            int(head[5:7]),
            int(head[8:10]),
            int(head[11:13]),
            int(head[14:16]),
            int(head[17:19]),
        )
    except ValueError:
        return False
    return True


def canonical(value: str) -> bool:
    """True when ``value`` already has the canonical shape (the wire fast path).

    A fixed-format check: the date and time of day are validated once per
    distinct second (consecutive lines of a log share it; the last two are
    remembered), then only the 6-digit fraction is looked at.
    """
    global _last_head, _prev_head
    if len(value) != 27 or value[26] != "Z" or value[19] != ".":
        return False
    head = value[:19]
    if head != _last_head and head != _prev_head:
        if not _valid_head(head):
            return False
        _prev_head = _last_head
        _last_head = head
    frac = value[20:26]
    return frac.isdigit() and frac.isascii()


def from_match(m: re.Match[str]) -> str | None:
    """The canonical string for a match of :data:`ISO_RE`, or None if out of range."""
    year, month, day, hour, minute, second, frac, tz = m.groups()
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = dt.replace(microsecond=micro)
    if tz and tz not in ("Z", "z", "UTC", "GMT"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        try:
            dt = dt - sign * offset
        except OverflowError:
            return None
    return dt.isoformat(timespec="microseconds") + "Z"


def parse_time(value: object) -> str | None:
    """Normalise a time value of unknown shape; None when it is not a time."""
    if isinstance(value, str):
        if canonical(value):
            return value
        m = ISO_RE.match(value.strip())
        return from_match(m) if m else _number(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _epoch(float(value))
    return None


def _number(value: str) -> str | None:
    try:
        return _epoch(float(value))
    except ValueError:
        return None


def _epoch(x: float) -> str | None:
    if x != x or x in (float("inf"), float("-inf")) or x < 0:
        return None
    # Tell units apart by magnitude: seconds until year ~5138, then ms, µs, ns.
    for scale in (1.0, 1e3, 1e6, 1e9):
        if x / scale < 1e11:
            return format_epoch(x / scale)
    return None
