"""The :class:`Redactor`: replaces secrets in strings and in rows, and counts them.

Used by the forwarder's redaction filter (:mod:`hal_logging.pipeline.filters.redact`)
and by the container-side OpenTelemetry handler (:mod:`hal_logging.otel`), so it
sits below both.

Speed: most rows contain no secret, so a row is first checked for a short list
of trigger substrings (``sk-``, ``eyj``, ``://``, ``bearer``, each known value,
...) in one Aho-Corasick pass done in C. When the parser vouches that every
string of the row appears verbatim in the source line (``Record.raw``: a wire
line without JSON escapes, a text line without terminal escapes), that line is
the only thing scanned; otherwise the string columns (joined) and Properties
(serialised once) are. Only rows that hit a trigger are walked and rewritten,
with one combined regular expression for the shapes and one alternation of the
known values (longest first). See benchmarks/redact.py for the measured overhead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from hal_logging import _json
from hal_logging.redaction.patterns import (
    ENV_KIND,
    KIND_ORDER,
    SECRET_KEY_RE,
    SHAPE_TRIGGERS,
    marker,
    shape_re,
)
from hal_logging.schema import COLUMN_NAMES, MAX_FIELD_BYTES, PROP_HAL, truncate_utf8


def _gate(patterns: list[bytes], fast: bool = True) -> tuple[Any, Any, Any]:
    """``(find, found, spans)`` over lower-cased bytes: the set of pattern indexes
    present, whether any is present, and the (start, end) of matches (None
    without the fast scanner; see :meth:`RedactFilter.prescan`).

    Aho-Corasick (``ahocorasick_rs``, a Rust extension) scans once for all
    patterns; without it, one ``in`` test per pattern (several times slower on
    a typical row, still correct). ``found`` and ``spans`` use leftmost-first
    matching, which the library runs with a SIMD prefilter (measured: 6x
    faster than the standard automaton ``find`` needs for overlapping matches):
    every trigger in the data is reported or overlaps a reported match.
    """
    try:
        if not fast:
            raise ImportError
        import ahocorasick_rs
    except ImportError:
        pats = list(enumerate(patterns))
        return (
            (lambda data: {i for i, p in pats if p in data}),
            (lambda data: any(p in data for _, p in pats)),
            None,
        )
    find = ahocorasick_rs.BytesAhoCorasick(patterns).find_matches_as_indexes
    leftmost = ahocorasick_rs.BytesAhoCorasick(
        patterns, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst
    ).find_matches_as_indexes
    return (
        (lambda data: {m[0] for m in find(data, overlapping=True)}),
        (lambda data: bool(leftmost(data))),
        (lambda data: [(m[1], m[2]) for m in leftmost(data)]),
    )


_MESSAGE_SAFE_CHARS: Final = MAX_FIELD_BYTES // 4
TEXT_COLUMNS: Final = tuple(
    c for c in COLUMN_NAMES if c not in ("TimeGenerated", "Level", "Properties")
)
#: Properties.hal keys the VM side writes itself from offsets and hashes: nothing to redact.
_PIPELINE_KEYS: Final = frozenset({"stream", "record_id", "format", "offset", "original_length"})


def _only_pipeline_metadata(props: Mapping[str, Any]) -> bool:
    """Properties holding nothing but the VM side's own ``hal`` bookkeeping (raw text rows)."""
    if len(props) != 1:
        return False
    hal = props.get(PROP_HAL)
    return isinstance(hal, dict) and hal.keys() <= _PIPELINE_KEYS


def _json_escaped(value: str) -> str:
    return _json.dumps(value).decode("utf-8")[1:-1]


class Redactor:
    """Replaces secrets in strings and in rows; counts what it replaced, by kind.

    ``counts`` (``prefix + kind`` -> n) may be a dict owned by the caller (the
    filter passes its ``stats``). Not thread-safe: use one per pipeline. Also
    used by the container-side OpenTelemetry handler.
    """

    def __init__(
        self,
        values: Mapping[str, str] | None = None,
        *,
        shapes: bool = True,
        counts: dict[str, int] | None = None,
        prefix: str = "",
        fast: bool = True,
    ) -> None:
        self.counts: dict[str, int] = {} if counts is None else counts
        self.prefix = prefix
        self.shapes = shapes
        self.hits = 0  # secrets replaced so far, all kinds
        literal: dict[str, str] = {}
        for value, name in (values or {}).items():
            literal.setdefault(value, name)
            literal.setdefault(_json_escaped(value), name)
        self._literal_names = literal
        self._literal_re = (
            re.compile("|".join(re.escape(v) for v in sorted(literal, key=len, reverse=True)))
            if literal
            else None
        )
        kinds: dict[bytes, set[str]] = {}
        if shapes:
            for trigger, announced in SHAPE_TRIGGERS.items():
                kinds.setdefault(trigger, set()).update(announced)
        # A value's raw spelling (in a single string) and JSON spelling (in a serialised row).
        for v in literal:
            for spelling in (v, _json_escaped(v)):
                kinds.setdefault(spelling.encode("utf-8", "surrogatepass").lower(), set()).add(
                    ENV_KIND
                )
        self._trigger_kinds = [frozenset(k) for k in kinds.values()]
        self._find, self._found, self._spans = _gate(list(kinds), fast)
        #: Longest trigger: a match across two chunks starts this close to the first's end.
        self.max_trigger = max(map(len, kinds), default=1)
        #: Strings shorter than this cannot hold anything we replace.
        self._min_len = min([6, *(len(v) for v in literal)])

    # -- strings ----------------------------------------------------------

    def count(self, kind: str, n: int = 1) -> None:
        key = self.prefix + kind
        self.counts[key] = self.counts.get(key, 0) + n
        self.hits += n

    def _literal(self, m: re.Match[str]) -> str:
        kind = "env:" + self._literal_names.get(m.group(0), "?")
        self.count(kind)
        return marker(kind)

    def kinds_in(self, data: bytes) -> set[str]:
        """Kinds of secret ``data`` may hold ({} = surely none); ``secret_field``... see gate."""
        found = self._find(data.lower())
        if not found:
            return set()
        kinds: set[str] = set()
        for i in found:
            kinds.update(self._trigger_kinds[i])
        kinds.add("")  # some trigger matched (may be a key-only one)
        return kinds

    def might_contain(self, data: bytes) -> bool:
        """Cheap pre-check on serialised bytes: False means surely nothing to redact."""
        return bool(self._found(data.lower()))

    def redact_text(self, text: str, kinds: set[str] | None = None) -> str:
        """``text`` with every secret of ``kinds`` (default: all) replaced."""
        if self._literal_re is not None and (kinds is None or ENV_KIND in kinds):
            text = self._literal_re.sub(self._literal, text)
        if self.shapes:
            todo = (
                KIND_ORDER
                if kinds is None
                else sorted((k for k in kinds if k in KIND_ORDER), key=KIND_ORDER.__getitem__)
            )
            for kind in todo:
                text = shape_re(kind).sub(functools.partial(self._shape, kind), text)
        return text

    def _shape(self, kind: str, m: re.Match[str]) -> str:
        if "v" not in m.re.groupindex or m.start("v") < 0:
            self.count(kind)
            return marker(kind)
        text = m.group(0)
        start, end = m.start("v") - m.start(), m.end("v") - m.start()
        if text.startswith("[REDACTED:", start):  # already replaced (an env value)
            return text
        self.count(kind)
        return text[:start] + marker(kind) + text[end:]

    def redact_str(self, text: str) -> str:
        """``text`` with every secret replaced; the same object when there was none."""
        if len(text) < self._min_len:
            return text
        kinds = self.kinds_in(text.encode("utf-8", "surrogatepass"))
        if "url_password" in kinds and "@" not in text:
            kinds.discard("url_password")  # every URL hits "://"; a password needs "user:pass@"
        if len(kinds) <= 1:  # nothing, or key-only triggers
            return text
        before = self.hits
        new = self.redact_text(text, kinds)
        return new if self.hits != before else text

    # -- structures -------------------------------------------------------

    def redact_value(self, value: Any, key: str | None = None, depth: int = 0) -> Any:
        """A JSON-typed value with secrets replaced; the same object when there was none."""
        if isinstance(value, str):
            if (
                key is not None
                and len(value) >= 4
                and SECRET_KEY_RE.search(key)
                and not value.startswith("[REDACTED:")
            ):
                self.count("secret_field")
                return marker("secret_field")
            return self.redact_str(value)
        if depth > 64:
            return value
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            changed = False
            for k, v in value.items():
                nk = self.redact_str(k) if isinstance(k, str) else k
                nv = self.redact_value(v, nk if isinstance(nk, str) else None, depth + 1)
                if nk is not k or nv is not v:
                    changed = True
                while nk in out:  # two keys redacted to the same marker: keep both
                    nk = f"{nk}#"
                out[nk] = nv
            return out if changed else value
        if isinstance(value, list):
            items = [self.redact_value(v, key, depth + 1) for v in value]
            return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
        return value

    def redact_row(
        self,
        row: dict[str, Any],
        skip: Iterable[str] = (),
        *,
        columns: tuple[str, ...] | None = None,
    ) -> bool:
        """Redact a row in place; returns whether anything was replaced.

        ``skip``: columns not to touch (the time, the level, trusted context);
        or ``columns``: the string columns to look at (precomputed by the filter).
        Two cheap pre-checks (the string columns joined; Properties serialised
        once, skipped when it holds only the VM side's own bookkeeping) decide
        which parts are looked at closely, so a URL in the Message does not
        cost a walk through Properties.
        """
        before = self.hits
        if columns is None:
            skipped = set(skip)
            columns = tuple(c for c in TEXT_COLUMNS if c not in skipped)
        cols = [c for c in columns if row.get(c)]
        if cols and self.might_contain(
            "\n".join(str(row[c]) for c in cols).encode("utf-8", "surrogatepass")
        ):
            for col in cols:
                value = row[col]
                if not isinstance(value, str):
                    continue
                new = self.redact_str(value)
                if new is not value:
                    if col == "Message" and len(new) > _MESSAGE_SAFE_CHARS:
                        new = truncate_utf8(new)[0]
                    row[col] = new
        props = row.get("Properties")
        if isinstance(props, dict) and props and not _only_pipeline_metadata(props):
            if self.might_contain(_json.dumps(props)):
                row["Properties"] = self.redact_value(props)
        return self.hits != before
