"""Metering: what a forwarder run handled, counted as it goes (rows, bytes, billed sizes).

The runner updates a :class:`Meter` from its one thread, once per batch of
records, so this is on the hot path; the closing summary and the dry-run report
(:mod:`hal_logging.pipeline.summary`) only read it. Billed bytes are estimated
the way Log Analytics bills (docs/facts.md §1): the stored text of each column,
which is the UTF-8 length of every string column plus Properties as JSON text.
A dry run computes the same figure over the same rows a real run ships, so its
estimate matches what is then stored.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Any, cast

import orjson

from hal_logging import _json, schema
from hal_logging.pipeline.model import Record, Row, RowEncoder

_STRING_COLS = tuple(c for c in schema.COLUMN_NAMES if c != "Properties")


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def _properties_json(props: Any) -> str:
    """Properties as the stored text (what billing measures); never raises."""
    try:
        return orjson.dumps(props, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return _json.dumps(props).decode("utf-8")  # odd values


def _measure_json(row: Row, data: bytes | None) -> int:
    """Billed size of a row whose JSON (``data``, None if not encoded) has escapes."""
    try:
        text = "".join(_get_strings(row))
        props = row["Properties"]
    except (KeyError, TypeError):
        return _measure_odd(row)[0]
    if (
        data is not None
        and len(row) == _NCOLS
        and '"' not in text
        and "\\" not in text
        and text.isprintable()  # no control characters (JSON escapes them)
    ):
        return len(data) - _JSON_OVERHEAD  # the escapes are all in Properties
    return _utf8_len(text) + _utf8_len(_properties_json(props))


def _plain_json(rows: list[Row]) -> list[bytes] | None:
    """Each row's plain orjson text, as exact-size copies (None: a row orjson refuses).

    Measures a list the row encoder left to the sink (rows it will fix, such
    as times outside the service's window): the billed size is that of the row
    as it is, which :func:`_measure_json` reads from these bytes as from the
    encoder's. Copied one by one: orjson's own result keeps a buffer of ~8 KB.
    """
    try:
        return list(_json.exact_copies(map(orjson.dumps, rows)))
    except TypeError:  # orjson.JSONEncodeError too
        return None


def _measure_odd(row: Row) -> tuple[int, str, str, str]:
    """(size, level, logger, task) of a row with missing or non-string columns."""
    size = billed_bytes(row, _json.dumps(row.get("Properties") or {}))
    level = str(row.get("Level") or "INFO")
    logger = str(row.get("LoggerName") or "")
    task = str(row.get("TaskID") or "")
    return size, level, logger, task


def billed_bytes(row: Row, properties_json: bytes | str) -> int:
    """Estimated billed size of a row: its column text (docs/facts.md §1)."""
    n = len(properties_json) if isinstance(properties_json, bytes) else _utf8_len(properties_json)
    for c in _STRING_COLS:
        v = row.get(c)
        if isinstance(v, str):
            n += _utf8_len(v)
        elif v is not None:
            n += _utf8_len(str(v))
    return n


_get_strings = operator.itemgetter(*_STRING_COLS)
_LEVEL_I = _STRING_COLS.index("Level")
_LOGGER_I = _STRING_COLS.index("LoggerName")
_TASK_I = _STRING_COLS.index("TaskID")
_NCOLS = len(schema.COLUMN_NAMES)
_ONLY_NCOLS = {_NCOLS}
_get_level = operator.itemgetter("Level")
_get_logger = operator.itemgetter("LoggerName")
_BACKSLASH = ord("\\")
#: Distinct keys up to which :func:`_sums_by` sums with one C-level pass each.
_FEW_KEYS = 4


def _sums_by(keys: list[Any], sizes: list[int]) -> dict[Any, tuple[int, int]]:
    """(rows, total size) per distinct key (a chunk's levels or loggers: usually a few).

    Counted with ``Counter`` (C); summed with one ``compress`` pass per key
    when the keys are few strings, else one Python step per row (measured,
    400 agent rows: ~130 ns a row against ~450 for a loop over (level, logger)).
    """
    counts = Counter(keys)
    if len(counts) == 1:
        ((key, n),) = counts.items()
        return {key: (n, sum(sizes))}
    if len(counts) <= _FEW_KEYS and all(type(k) is str for k in counts):
        return {k: (n, sum(compress(sizes, map(k.__eq__, keys)))) for k, n in counts.items()}
    totals: dict[Any, int] = dict.fromkeys(counts, 0)
    for key, size in zip(keys, sizes, strict=True):
        totals[key] += size
    return {k: (n, totals[k]) for k, n in counts.items()}

_get_task_column = operator.itemgetter("TaskID")
#: A row's JSON minus its column text: keys, quotes, colons, commas, braces
#: (the same for any order of the keys). Exact when no string value needs an escape.
_JSON_OVERHEAD = len(orjson.dumps({**dict.fromkeys(_STRING_COLS, ""), "Properties": None})) - len(
    b"null"
)


@dataclass
class Meter:
    """The counters of one run; updated by the runner thread only."""

    bytes_read: int = 0
    lines: int = 0
    rows: Counter[str] = field(default_factory=Counter)  # rows handed to the sink, by level
    billed: Counter[str] = field(default_factory=Counter)  # billed bytes by level
    rows_by_logger: Counter[str] = field(default_factory=Counter)
    billed_by_logger: Counter[str] = field(default_factory=Counter)
    tasks: set[str] = field(default_factory=set)

    def count_row(self, row: Row, size: int) -> None:
        level = row.get("Level") or "INFO"
        logger = row.get("LoggerName") or ""
        self.rows[level] += 1
        self.billed[level] += size
        self.rows_by_logger[logger] += 1
        self.billed_by_logger[logger] += size
        task = row.get("TaskID")
        if task:
            self.tasks.add(task)

    def add_records(self, records: list[Record], encode: RowEncoder | None = None) -> int:
        """Size (``Record.size`` = billed bytes) and count records handed to the sink.

        The hot path of the forwarder. Without ``encode``, Properties is
        serialised once here (``Record.columns``, which the SQLite sink then
        stores as is), the string columns are measured with one join and one
        ``isascii``, Properties by the length of its JSON (UTF-8 already), and
        the counters are updated once per (level, logger) of the call, not per
        row. (One loop per row while the rows are in cache: ``map`` passes over
        the whole list were slower, 0.27 -> 0.36 s per 100k rows.) With
        ``encode`` (a JSON sink's
        :meth:`~hal_logging.pipeline.model.Sink.row_encoder`), see
        :meth:`_add_encoded`. Rows with odd values take the slow path.
        Returns the records' total size.
        """
        if encode is not None:
            return self._add_encoded(records, encode)
        dumps = _json.dumps
        fast_dumps = orjson.dumps  # plain orjson first: the wrapper's call costs per row
        opts = orjson.OPT_NON_STR_KEYS
        get = _get_strings
        level_i, logger_i, task_i = _LEVEL_I, _LOGGER_I, _TASK_I
        groups: dict[tuple[str, str], list[int]] = {}
        tasks = self.tasks
        last_task = ""
        last_level = last_logger = None
        acc: list[int] = []
        for r in records:
            row = r.row
            try:
                vals = get(row)
                text = "".join(vals)
                props = row["Properties"]
                try:
                    data = fast_dumps(props, None, opts)  # (positional: no keyword parsing)
                except TypeError:  # orjson.JSONEncodeError too
                    data = dumps(props)  # odd values: never raises
                pj = data.decode()
                if type(props) is dict:
                    r.columns = vals + (pj,)  # noqa: RUF005 - 98 vs 175 ns: (*a, b) builds a list
                # isascii() is O(1) on a str: most rows are measured without encoding;
                # the JSON is UTF-8 already, its length is its billed size.
                size = (
                    len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
                ) + len(data)
                level, logger, task = vals[level_i], vals[logger_i], vals[task_i]
            except (KeyError, TypeError):
                size, level, logger, task = _measure_odd(row)
            r.size = size
            r.raw = None  # only for the filters' pre-checks: not kept while the batch waits
            if level != last_level or logger != last_logger:  # runs of the same are usual
                last_level, last_logger = level, logger
                acc = groups.setdefault((level, logger), [0, 0])
            acc[0] += 1
            acc[1] += size
            if task and task != last_task:
                tasks.add(task)
                last_task = task
        return self._add_groups(groups)

    def _add_encoded(self, records: list[Record], encode: RowEncoder) -> int:
        """:meth:`add_records` for a sink that sends each row as JSON.

        Each row is serialised once, by the sink's encoder, into
        ``Record.prepared``, and measured from those bytes: a row's JSON is its
        column text plus a constant for the keys whenever no string needs an
        escape, which one search for a backslash tells. The usual list (one
        chunk of rows) is handled with C-level calls over the whole list
        (``map``, ``set``, ``compress``, ``Counter``: see :func:`_sums_by`); a
        Python step is left only for rows with a backslash somewhere. (The
        parser gives every string column as a str; a row where one is not is
        still measured, only less exactly.)
        """
        rows = [r.row for r in records]
        try:
            levels = list(map(_get_level, rows))
            loggers = list(map(_get_logger, rows))
            tasks = set(map(_get_task_column, rows))
        except (KeyError, TypeError):  # a row without its columns: each on its own
            return self._add_one_by_one(records, encode)
        datas = encode(rows)
        n = len(records)
        careful: Iterable[int]
        measured: list[bytes] | None = None
        if set(map(len, rows)) == _ONLY_NCOLS:
            if None not in datas:  # the usual list
                measured = cast("list[bytes]", datas)
            elif datas.count(None) == n:  # e.g. an old file: the sink fixes every row
                measured = _plain_json(rows)  # the rows as they are, only to measure them
        if measured is not None:
            sizes = list(map(operator.sub, map(len, measured), repeat(_JSON_OVERHEAD)))
            # operator.contains with an int is one memchr (~70 ns a row; bytes.__contains__
            # with b"\\" goes through the general search: ~500 ns).
            careful = compress(range(n), map(operator.contains, measured, repeat(_BACKSLASH)))
        else:
            sizes = [0] * n
            careful = range(n)
        for i in careful:  # rows with a backslash somewhere, or odd lists: one by one
            sizes[i] = _measure_json(rows[i], measured[i] if measured is not None else datas[i])
        # One pass over the records (each touch of 400k scattered objects costs).
        for r, data, size in zip(records, datas, sizes, strict=True):
            r.prepared = data
            r.size = size
            r.raw = None  # only for the filters' pre-checks: not kept while the batch waits
        self.tasks.update(str(t) for t in tasks if t)
        by_level = _sums_by(levels, sizes)
        self._add_sums(by_level, self.rows, self.billed)
        self._add_sums(_sums_by(loggers, sizes), self.rows_by_logger, self.billed_by_logger)
        return sum(total for _, total in by_level.values())

    @staticmethod
    def _add_sums(sums: dict[Any, tuple[int, int]], rows: Counter[Any], billed: Counter[Any]) -> None:
        for key, (n, total) in sums.items():
            rows[key] += n
            billed[key] += total

    def _add_one_by_one(self, records: list[Record], encode: RowEncoder) -> int:
        """:meth:`_add_encoded` for a list with odd rows: each row on its own."""
        total = 0
        for r in records:
            row = r.row
            try:
                _get_strings(row)
            except (KeyError, TypeError):  # missing columns: the slow measure
                size, level, logger, task = _measure_odd(row)
                r.size = size
                r.raw = None
                if task:
                    self.tasks.add(task)
                total += self._add_groups({(level, logger): [1, size]})
                continue
            total += self._add_encoded([r], encode)
        return total

    def _add_groups(self, groups: dict[tuple[str, str], list[int]]) -> int:
        """Add per-(level, logger) [rows, billed bytes] to the counters; the billed total."""
        rows, billed = self.rows, self.billed
        by_logger, billed_logger = self.rows_by_logger, self.billed_by_logger
        total = 0
        for (level, logger), (n, size) in groups.items():
            rows[level] += n
            billed[level] += size
            by_logger[logger] += n
            billed_logger[logger] += size
            total += size
        return total

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_billed(self) -> int:
        return sum(self.billed.values())
