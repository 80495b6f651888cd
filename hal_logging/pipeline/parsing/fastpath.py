"""The wire fast path: runs of wire lines exactly as ``configure()`` writes them.

The forwarder's hot loop. :meth:`WireFastPath.feed_many` takes the lines of one
chunk; runs of wire lines go through :meth:`WireFastPath._wire_run` (one
``orjson.loads`` a line, the checks made once per run where they can be), the
other lines through the careful path (:meth:`Parser.feed`), and the chunk ends
with the read-time walk (:func:`_clamp_read_times`). Every row taken here is
the row the careful path gives, byte for byte (tests/test_parsing_fastpath*.py
hold it to that, against a parser with this lane off). Module-level names are
bound once, as locals are, for speed.

No slow cliff (issue 15): lines that claim something the trust rule keeps (a
context other than the forwarder's, a reserved logger name, a time outside the
wrapped command's lifetime, a Properties.hal of their own) and Messages with
terminal escapes stay in the lane, their claims decided once per context (not
per line). Measured (benchmarks/parse.py, CPU per 100k lines against the plain
wire lines in the same run, before -> after): claims 3.04x -> 1.05x, out of the
lifetime 2.72x -> 1.18x, reserved logger 2.52x -> 1.18x, own Properties.hal
2.38x -> 1.11x, colours 3.34x -> 1.26x. The price: the keys' order is checked
(one list comparison, ~0.2 us a line): the careful path orders a row's columns,
and a line with its keys in another order used to keep that order here.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Final

import orjson

from hal_logging import schema
from hal_logging.pipeline.model import Line, Record
from hal_logging.pipeline.parsing.held import HeldGroups
from hal_logging.pipeline.parsing.levels import LEVEL_SET
from hal_logging.pipeline.parsing.records import _SMALL
from hal_logging.pipeline.parsing.terminal import strip_escapes
from hal_logging.pipeline.parsing.timestamps import canonical
from hal_logging.pipeline.parsing.trust import (
    CLAIMED_LOGGER_PREFIX,
    RESERVED_LOGGER,
    is_reserved_logger,
)

_WIRE_PREFIX: Final = schema.WIRE_PREFIX
_loads: Final = orjson.loads
_WIRE_VERSION: Final = schema.WIRE_VERSION
_VERSION_KEY: Final = schema.WIRE_VERSION_KEY
#: orjson's own objects for the wire keys. orjson keeps a cache of map keys for
#: the process, so the lines it parses share these very objects: a comparison
#: (the lane's key check) or dict lookup that finds the same object skips
#: comparing strings (measured: the fast path's 14 lookups cost half). If the
#: cache ever drops one, they still work (by equality), only slower.
_KEY: Final[dict[str, str]] = {
    k: k for k in _loads(orjson.dumps(dict.fromkeys((_VERSION_KEY, *schema.COLUMN_NAMES), 0)))
}
_K_VERSION: Final = _KEY[_VERSION_KEY]
#: The wire keys in the order ``configure()`` writes them: the marker, then the
#: table's columns (the text columns that change from line to line, the context
#: columns (docs/contract.md §3), the same from line to line: checked (types, trust
#: rule) only when they change, and Properties).
_WIRE_KEYS: Final = [_KEY[c] for c in (_VERSION_KEY, *schema.COLUMN_NAMES)]
_CTX_COLUMNS: Final = tuple(c.name for c in schema.CONTEXT_COLUMNS)
_CTX_INDEX: Final = {c: i for i, c in enumerate(_CTX_COLUMNS)}
assert schema.COLUMN_NAMES[4:12] == _CTX_COLUMNS and len(schema.COLUMN_NAMES) == 13
_K_TIME: Final = _KEY["TimeGenerated"]
_K_MESSAGE: Final = _KEY["Message"]
_K_LOGGER: Final = _KEY["LoggerName"]
_PROP_HAL: Final = schema.PROP_HAL
_HAL_CLAIMED: Final = schema.HAL_CLAIMED
#: Contexts remembered with their trust-rule outcome (see _wire_run); cleared when full.
#: (An equal tuple is all text too: a str equals only a str.)
_MEMO_MAX: Final = 64
_HAL_STREAM: Final = schema.HAL_STREAM
_HAL_RECORD_ID: Final = schema.HAL_RECORD_ID
_HAL_FORMAT: Final = schema.HAL_FORMAT
_HAL_OFFSET: Final = schema.HAL_OFFSET
_start_of: Final = operator.attrgetter("start")


class WireFastPath(HeldGroups):
    """The batch loop over a chunk's lines and the wire fast path."""

    #: Read per run and remembered from line to line (set in Parser.__init__).
    #: (stream, source, trust_get: an itemgetter of the trusted columns' claims,
    #: the trusted values, {column key: trusted value}, the trusted items).
    _fast: tuple[str, str, Any, tuple[str, ...], dict[str, str], tuple[tuple[str, str], ...]]
    _fast_state: tuple[tuple[str, ...] | None, bool, dict[str, str] | None, str, str]
    #: Contexts (all text) -> (write the trusted values?, the claims kept).
    _claims_memo: dict[tuple[str, ...], tuple[bool, dict[str, str] | None]]
    resend: bool
    not_resent: int

    if TYPE_CHECKING:

        def _feed(self, line: Line, fast: bool) -> list[Record]: ...

    def feed_many(self, lines: list[Line]) -> list[Record]:
        """``feed`` over the lines of one chunk, in order, then the read-time walk
        (:func:`_clamp_read_times`). The forwarder's hot loop: runs of wire lines
        take the fast path without a call to ``feed`` each."""
        out: list[Record] = []
        n = len(lines)
        if not n:
            return out
        read_time = self._received(lines[-1].received)
        if self._bounded:
            self._bound_hi(lines[-1].received)
        self._read_time_hit = False
        slow = False  # a line went through feed(): its row may carry the read time
        feed = self._feed
        wire = self._wire_first
        ids: list[str] | None = None
        i = 0
        while i < n:
            line = lines[i]
            if (
                wire
                and line.data.startswith(_WIRE_PREFIX)
                and not self._held
                and self._skip_from is None
            ):
                if ids is None:
                    # The lines' record ids, formatted at once (one call, not one a line).
                    ids = (self._id_format * n % tuple(map(_start_of, lines))).split()
                i = self._wire_run(lines, i, ids, out, read_time)
                if i == n:
                    break
                line = lines[i]  # the line it did not take: the careful path
                i += 1
                out.extend(feed(line, False))
            else:
                i += 1
                out.extend(feed(line, True))
            slow = True
        if (slow or self._read_time_hit) and len(out) > 1:
            # (Only fast-path rows, none at the read time: the walk would change nothing.)
            _clamp_read_times(out, read_time)
        return out

    def _wire_fast(self, data: bytes, start: int, end: int) -> Record | None:
        """One wire line through the fast path (see :meth:`_wire_run`), or None."""
        out: list[Record] = []
        line = Line(data, self.stream, start, end, 0.0)
        self._wire_run([line], 0, [self._id_one % start], out, None)
        return out[0] if out else None

    def _wire_run(
        self,
        lines: list[Line],
        i: int,
        ids: list[str],
        out: list[Record],
        read_time: str | None,
        stream: str | None = None,
        fmt: str = "wire",
    ) -> int:
        """Wire lines exactly as ``configure()`` writes them, while they come.

        Takes ``lines`` from index ``i`` (``ids`` holds their record ids) and
        appends their records to ``out`` until a line it does not take; returns
        that line's index (for :meth:`feed`: the careful path), or
        ``len(lines)``. The caller checks that no group is held and no blank
        line is pending (nothing here changes either).

        The hot path of the forwarder: one ``orjson.loads``, the keys and the
        value types checked at once, the time by its shape, the trust rule once
        per change of the context columns; the parsed object becomes the row.
        Lines that claim something (docs/contract.md §3: a context other than
        the VM side's, a reserved logger name, a time outside the writer's
        lifetime, a Properties.hal of their own) and messages with terminal
        escapes or NUL are taken too, with the notes the careful path writes,
        in its order (claims: LoggerName, TimeGenerated, the trusted columns,
        hal). Anything else unusual (odd types, keys out of the table's order,
        a long line, a blank line before it) is not taken, and the careful path
        gives the same row for the lines this one takes. A row whose time is
        ``read_time`` sets ``_read_time_hit`` (:func:`_clamp_read_times` must
        look at the chunk). ``stream`` and ``fmt``: a Docker record's (the
        line's payload unwrapped, see :meth:`Parser._docker_piece`).
        """
        own_stream, source, trust_get, trust_vals, trust_map, trust = self._fast
        if stream is None:
            stream = own_stream
        ctx_ok, fill, claimed, time_head, logger_ok = self._fast_state
        memo = self._claims_memo
        resend = self.resend
        # The writer's lifetime, checked with the time's shape (once per second): a
        # second strictly inside it passes; the times of other seconds are compared
        # exactly (a time outside is a claim: the read time replaces it). Unbounded:
        # "" and "\uffff", always inside.
        lo, hi = self._time_secs
        time_lo, time_hi = self._time_lo, self._time_hi
        if time_head >= hi:  # (the clock went back: check the second again)
            time_head = ""
        reserved = RESERVED_LOGGER
        append = out.append
        n_before = len(out)
        hit = False
        k = i
        try:
            for k in range(i, len(lines)):  # (k: the index returned)
                line = lines[k]
                data = line.data
                if line.length >= 0 or len(data) > _SMALL or not data.startswith(_WIRE_PREFIX):
                    break
                obj = _loads(data)  # a dict: the line starts with "{"
                if list(obj) != _WIRE_KEYS:  # (a list: measured ~10% cheaper than a tuple)
                    # The marker and the columns, once each and in the table's order
                    # (the careful path orders a row's columns; a duplicate key keeps
                    # its first place and its last value, in both paths).
                    break
                version, tg, level, msg, logger, c0, c1, c2, c3, c4, c5, c6, c7, props = (
                    obj.values()
                )
                ctx = (c0, c1, c2, c3, c4, c5, c6, c7)
                del obj[_K_VERSION]
                start = line.start
                raw = None if 92 in data else data
                hal = {
                    _HAL_STREAM: stream,
                    _HAL_RECORD_ID: ids[k],
                    _HAL_FORMAT: fmt,
                    _HAL_OFFSET: start,
                }
                mine: dict[str, Any] | None = None  # this line's own claims
                if (
                    type(msg) is not str
                    or type(logger) is not str
                    or type(version) is not int
                    or version != _WIRE_VERSION
                    or level not in LEVEL_SET
                ):
                    break  # (obj was changed: the careful path parses the line again)
                # Properties an object (else AttributeError: not taken)
                if props.setdefault(_PROP_HAL, hal) is not hal:
                    if resend:
                        break  # (--resend may keep it: the careful path decides)
                    # The container's own Properties.hal: a claim, kept last.
                    forged = props.pop(_PROP_HAL)
                    props[_PROP_HAL] = hal
                    mine = {"hal": forged}
                if "\x9b" in msg or (raw is None and ("\x00" in msg or "\x1b" in msg)):
                    # (Without a backslash in the line no control character can be in it.)
                    obj[_K_MESSAGE] = _clean_message(msg, hal)
                    raw = None  # (the Message is no longer verbatim in the line)
                if logger != logger_ok:
                    if logger.startswith(reserved) and not resend and is_reserved_logger(logger):
                        # The VM side's logger name: a claim (not under --resend, as in the careful path).
                        if mine is None:
                            mine = {}
                        mine["LoggerName"] = logger
                        obj[_K_LOGGER] = CLAIMED_LOGGER_PREFIX + logger
                    else:
                        logger_ok = logger
                if tg[:20] != time_head or len(tg) != 27 or tg[26] != "Z":
                    # Not the second of the line before: the full check (once per second;
                    # a TimeGenerated that is not a str always comes here, or raises).
                    if type(tg) is not str or not canonical(tg):
                        break
                    if lo < tg[:20] < hi:
                        time_head = tg[:20]
                    elif tg < time_lo or tg > time_hi:
                        # Outside the writer's lifetime: a claim; the read time is used.
                        if mine is None:
                            mine = {}
                        mine["TimeGenerated"] = tg
                        obj[_K_TIME] = tg = self._received(line.received)
                elif not tg[20:26].isdigit() or not tg.isascii():  # the fraction: 6 ASCII digits
                    break
                if tg == read_time:
                    hit = True
                if ctx != ctx_ok:  # (else the context of the line before: known good)
                    got = memo.get(ctx)  # (a context seen before: known good)
                    if got is None:
                        "".join(ctx)  # all text (else TypeError: not taken)
                        got = _judge_claims(trust, trust_vals, trust_get(ctx))
                        if len(memo) >= _MEMO_MAX:
                            memo.clear()
                        memo[ctx] = got
                    fill, claimed = got
                    ctx_ok = ctx
                if fill:  # (a blank or differing claim: the trusted values replace them)
                    obj.update(trust_map)
                if mine is not None:
                    hal[_HAL_CLAIMED] = _merge_claims(mine, claimed)
                elif claimed is not None:
                    hal[_HAL_CLAIMED] = claimed.copy()
                # No backslash (92): every string of the row is verbatim in the line
                # (see Record.raw), but the VM side's own (Properties.hal, trusted values).
                append(Record(obj, stream, start, line.end, source, 0, raw))
            else:
                k = len(lines)
        except Exception:  # anything unforeseen (a missing key...): the careful path decides
            pass
        self._fast_state = (ctx_ok, fill, claimed, time_head, logger_ok)
        if resend:  # (what the careful path counts: rows that kept no record id)
            self.not_resent += len(out) - n_before
        if hit:
            self._read_time_hit = True
        return k


def _judge_claims(
    trust: tuple[tuple[str, str], ...], trust_vals: tuple[str, ...], claims: tuple[str, ...]
) -> tuple[bool, dict[str, str] | None]:
    """What the trust rule (:func:`~.trust.apply_trust`) does to a context's claims:
    whether the trusted values must be written (a claim differs or is blank), and the
    claims kept (non-empty and not the trusted value), in the trusted columns' order."""
    if claims == trust_vals:
        return False, None
    claimed = {
        col: claim
        for (col, value), claim in zip(trust, claims, strict=False)
        if claim and claim != value
    }
    return True, claimed or None


def _merge_claims(mine: dict[str, Any], claimed: dict[str, str] | None) -> dict[str, Any]:
    """A line's own claims and its context's, in the careful path's order: LoggerName
    (:func:`~.trust.demote_reserved_logger`), TimeGenerated (the lifetime bound), the
    trusted columns (:func:`~.trust.apply_trust`), then the container's Properties.hal."""
    out: dict[str, Any] = {}
    if "LoggerName" in mine:
        out["LoggerName"] = mine["LoggerName"]
    if "TimeGenerated" in mine:
        out["TimeGenerated"] = mine["TimeGenerated"]
    if claimed:
        out.update(claimed)
    if "hal" in mine:
        out["hal"] = mine["hal"]
    return out


def _clean_message(msg: str, hal: dict[str, Any]) -> str:
    """A Message with terminal escapes or NUL, as the careful path cleans it
    (:func:`~.wire.row_from_wire`): NUL removed (noted), escapes stripped."""
    if "\x00" in msg:
        msg = msg.replace("\x00", "")
        hal["problems"] = ["NUL characters removed from Message"]
    return strip_escapes(msg)


def _clamp_read_times(records: list[Record], read_time: str) -> None:
    """Keep a chunk's text rows in order with the wire rows written after them.

    A line without a timestamp of its own gets the time it was *read*, which is
    later than when the container wrote it: sorted by TimeGenerated, a
    ``print()`` would land after records logged after it. A record later in the
    same chunk (same stream, written later) bounds such a line's time, so each
    read-timed row takes the smallest time that follows it. Times are
    fixed-format ISO strings, so they compare as strings.
    """
    bound: str | None = None
    for rec in reversed(records):
        row = rec.row
        if type(row) is not dict:
            continue
        t = row.get("TimeGenerated")
        if t is read_time or t == read_time:
            if bound is not None and bound < t:
                row["TimeGenerated"] = bound
        elif isinstance(t, str) and (bound is None or t < bound):
            bound = t
