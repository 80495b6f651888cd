"""Serialising rows once, as the service will keep them: the time window and the field limit.

Each row is dumped with orjson once; those bytes are what is packed, sent,
bisected and dead-lettered. Two things are fixed on the way, because the
service would otherwise change or refuse the row silently:

- **TimeGenerated** older than 2 days or more than 1 day ahead is replaced by
  the service with the time of ingestion, without a word. Such a row is sent
  with the current time and keeps its own in ``Properties.hal.original_time``.
  The window is taken an hour narrower on each side, for time spent in retries.
- **A field over 64 KB** is cut by :func:`hal_logging.azure.rowfit.fit_row`,
  which says so in the row.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import orjson

from hal_logging import _json, schema
from hal_logging.azure.rowfit import fit_row
from hal_logging.delivery import Row

__all__ = ["TIME_FUTURE", "TIME_NOTE", "TIME_PAST", "Encoded", "encode_rows", "row_encoder"]

#: The TimeGenerated window the service keeps, with a margin for time spent in retries.
TIME_PAST: Final = timedelta(days=2) - timedelta(hours=1)
TIME_FUTURE: Final = timedelta(days=1) - timedelta(hours=1)
TIME_NOTE: Final = (
    "some TimeGenerated values were more than 2 days old or 1 day ahead; Azure would have replaced them "
    "silently, so they were sent with the current time and kept in Properties.hal.original_time"
)
_get_time: Final = operator.itemgetter("TimeGenerated")
_ONLY_27: Final = {27}
_FRACTION: Final = re.compile(r"(\.\d{6})\d+")


class Encoded:
    """What :func:`encode_rows` fixed: rows whose time was replaced, rows cut, the first bad time."""

    __slots__ = ("cut", "first_bad", "fixed")

    def __init__(self) -> None:
        self.fixed = 0
        self.cut = 0
        self.first_bad: Any = None


def _window(now: datetime) -> tuple[str, str]:
    return (
        (now - TIME_PAST).strftime("%Y-%m-%dT%H:%M:%S"),
        (now + TIME_FUTURE).strftime("%Y-%m-%dT%H:%M:%S"),
    )


def encode_rows(rows: Sequence[Row], append: Callable[[bytes], None], limit: int) -> Encoded:
    """Each row's bytes to ``append``, in order: time fixed, too-long fields cut to fit ``limit``."""
    now = datetime.now(timezone.utc)
    lo, hi = _window(now)
    now_text = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fast_dumps = orjson.dumps  # plain: ~30% faster than with options; odd rows fall back
    field_limit = schema.MAX_FIELD_BYTES
    fixed = cut = 0
    first_bad: Any = None
    stale = _all_outside(rows, lo, hi)
    for row in rows:
        stamp = row.get("TimeGenerated")
        if stale or (not _plainly_in_window(stamp, lo, hi) and not _time_ok(stamp, lo, hi, now)):
            row = _with_original_time(row, stamp, now_text)
            if not fixed:
                first_bad = stamp
            fixed += 1
        try:
            data = fast_dumps(row)
        except TypeError:  # orjson.JSONEncodeError too: non-str keys, odd types, cycles
            data = _json.dumps(row)
        if len(data) > field_limit:
            _, data, changed = fit_row(row, limit)
            cut += changed
        append(data)
    out = Encoded()
    out.fixed, out.cut, out.first_bad = fixed, cut, first_bad
    return out


def row_encoder() -> Callable[[Sequence[Row]], list[bytes | None]]:
    """Each usual row's exact bytes as :func:`encode_rows` gives them, else None.

    For callers that walk every row anyway (the forwarder's stats): a row
    whose TimeGenerated is in the window the service keeps and that fits
    the field limit as it is, serialised by plain orjson; None for any
    other row (it then takes :func:`encode_rows`, which fixes and cuts).
    A list of rows all usual (the common case: one chunk of wire lines) is
    checked and encoded with C-level calls over the list, not a Python
    step per row. The time window is taken when this is called: call it
    per batch.
    """
    lo, hi = _window(datetime.now(timezone.utc))
    dumps = orjson.dumps
    field_limit = schema.MAX_FIELD_BYTES

    def one(row: Row) -> bytes | None:
        if not _plainly_in_window(row.get("TimeGenerated"), lo, hi):
            return None
        try:
            data = dumps(row)
        except TypeError:  # orjson.JSONEncodeError too
            return None
        if len(data) > field_limit:
            return None
        # Exact size: orjson's own result keeps a buffer of ~4 KB.
        return _json.exact_copy(data)

    def encode(rows: Sequence[Row]) -> list[bytes | None]:
        if not rows:
            return []
        try:
            stamps = list(map(_get_time, rows))
            joined = "".join(stamps)  # TypeError: a time that is not a str
            n = len(stamps)
            # _plainly_in_window for every row at once: all 27 characters long,
            # "T" at 10 and "Z" at 26 of each (strided slices of the joined text),
            # and the smallest and largest inside the window (text order is
            # monotone in a prefix, so min/max bound every stamp[:19]).
            if (
                set(map(len, stamps)) == _ONLY_27
                and joined[10::27] == "T" * n
                and joined[26::27] == "Z" * n
                and lo <= min(stamps)[:19]
                and max(stamps)[:19] <= hi
            ):
                # Exact-size copies, each made as its row is dumped: orjson's own
                # result keeps a buffer of ~8 KB (a chunk's worth at once would be
                # MBs), and the one buffer then stays warm in the allocator.
                datas: list[bytes] = list(_json.exact_copies(map(dumps, rows)))
                if max(map(len, datas)) <= field_limit:
                    return datas  # type: ignore[return-value]
        except (KeyError, TypeError):  # a row without a time, or odd values: one by one
            pass
        if _all_outside(rows, lo, hi):  # an old file shipped again: encode_rows fixes each
            return [None] * len(rows)
        return list(map(one, rows))

    return encode


def _all_outside(rows: Sequence[Row], lo: str, hi: str) -> bool:
    """Every row's TimeGenerated in the usual form and outside the window (checked over the list).

    The case of an old file shipped again: each row then takes the fix, and
    :func:`_plainly_in_window` and :func:`_time_ok` would each say so row by
    row. Same tests as :func:`row_encoder`'s list check, the window reversed:
    the largest stamp before it or the smallest after it.
    """
    try:
        stamps = list(map(_get_time, rows))
        joined = "".join(stamps)
    except (KeyError, TypeError):
        return False
    n = len(stamps)
    return (
        n > 0
        and set(map(len, stamps)) == _ONLY_27
        and joined[10::27] == "T" * n
        and joined[26::27] == "Z" * n
        and (max(stamps)[:19] < lo or hi < min(stamps)[:19])
    )


def _plainly_in_window(stamp: Any, lo: str, hi: str) -> bool:
    """The usual "YYYY-MM-DDTHH:MM:SS.ffffffZ" inside [lo, hi], compared as text.

    False says nothing yet: :func:`_time_ok` decides for any other form.
    """
    return (
        type(stamp) is str
        and len(stamp) >= 20
        and stamp[-1] == "Z"
        and stamp[10] == "T"
        and lo <= stamp[:19] <= hi
    )


def _time_ok(stamp: Any, lo: str, hi: str, now: datetime) -> bool:
    """Within the service's window? Lexical compare for the usual UTC form, parse otherwise."""
    if not isinstance(stamp, str):
        return False
    if len(stamp) >= 20 and stamp[10] == "T" and (stamp.endswith("Z") or stamp.endswith("+00:00")):
        key = stamp[:19]
        return lo <= key <= hi
    text = stamp.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(r"\1", text)  # Python 3.10 takes at most 6 fraction digits
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return now - TIME_PAST <= when <= now + TIME_FUTURE


def _with_original_time(row: Row, stamp: Any, now_text: str) -> Row:
    out = row.copy() if type(row) is dict else dict(row)
    props = out.get("Properties")
    props = props.copy() if type(props) is dict else _as_properties(props)
    hal = props.get(schema.PROP_HAL)
    hal = hal.copy() if type(hal) is dict else (dict(hal) if isinstance(hal, dict) else {})
    hal.setdefault(
        schema.HAL_ORIGINAL_TIME, stamp if isinstance(stamp, str) else _json.dumps_str(stamp)
    )
    props[schema.PROP_HAL] = hal
    out["Properties"] = props
    out["TimeGenerated"] = now_text
    return out


def _as_properties(props: Any) -> dict[str, Any]:
    return dict(props) if isinstance(props, dict) else ({} if props is None else {"value": props})
