"""Secret redaction: the first filter, so no secret leaves the VM in any mode or sink.

Two kinds of secret are replaced, each by a marker naming what it was, and the
row is always kept:

- **Known values**: the values of environment variables the forwarder was told
  about (``--redact-env NAME``, ``HAL_LOGGING_REDACT_ENV=A,B``), in wrap mode the
  values given to the command with ``-e NAME=VALUE``, and (on by default) the
  values of VM or command variables whose names look secret (``*KEY*``,
  ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ...). Marker ``[REDACTED:env:NAME]``.
  Values shorter than :data:`MIN_AUTO_VALUE` characters (8) found through a
  name or ``-e`` are skipped: replacing ``1`` or ``true`` everywhere would wreck
  the logs and protect nothing. A variable named explicitly is redacted from
  :data:`MIN_NAMED_VALUE` (4) characters. The JSON-escaped spelling of a value is
  redacted too (a value with ``"`` or ``\\`` printed inside a JSON text).
- **Credential shapes** (:data:`PATTERNS`): OpenAI / Anthropic keys, GitHub
  tokens, AWS key ids and secret keys, Azure connection-string keys and SAS
  signatures, JWTs, ``Authorization: Bearer/Basic`` values, passwords in URLs
  (``scheme://user:pass@``), ``password=...``-style assignments, and private-key
  blocks, also when a block is printed line by line (each line its own row).
  Marker ``[REDACTED:<kind>]``; where a prefix says what the value is
  (``AccountKey=``, ``Bearer``, the user in a URL) the prefix is kept.
- **Secret-named fields**: a string value under a Properties key such as
  ``password``, ``api_key``, ``client_secret`` or ``token`` is replaced whole
  (``[REDACTED:secret_field]``).

Applied to Message, LoggerName and the other string columns the container may
fill, and to every key and string value inside Properties (tracebacks in
``Properties.exception`` included), recursively. A Message that grew past the
64 KB field limit is cut again.

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
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hal_logging import _json
from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import (
    COLUMN_NAMES,
    CONTEXT_COLUMNS,
    MAX_FIELD_BYTES,
    PROP_HAL,
    truncate_utf8,
)

MIN_AUTO_VALUE: Final = 8
MIN_NAMED_VALUE: Final = 4

#: Variable names whose values are secrets by default (case-insensitive substring).
SECRET_NAME_RE: Final = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PWD|CREDENTIAL|AUTH|PRIVATE|SAS|CONNECTION_STRING|COOKIE|SESSION",
    re.IGNORECASE,
)
#: Variables that are never secrets even in wrap mode's ``-e`` list: the run context.
_CONTEXT_ENV: Final = frozenset(c.env for c in CONTEXT_COLUMNS if c.env)
_NEVER_SECRET: Final = _CONTEXT_ENV | {
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TERM", "SHELL", "PWD", "OLDPWD",
    "HOSTNAME", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV",
    "HAL_LOGGING_REDACT_ENV", "HAL_LOG_FORMAT", "HAL_LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT",
}  # fmt: skip

#: Properties keys whose string values are secrets as a whole.
SECRET_KEY_RE: Final = re.compile(
    r"passw(?:or)?d|secret|api[_-]?key|private[_-]?key|credential|token$|^authorization$|^cookie$",
    re.IGNORECASE,
)

_B = r"(?<![A-Za-z0-9_\-])"  # token boundary on the left

#: (kind, regex). A regex may name a group ``v``: only that part is replaced
#: and the rest (the prefix saying what the value is) is kept.
PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?P<v>[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z))",
    ),
    ("anthropic_key", _B + r"sk-ant-[A-Za-z0-9_\-]{16,}"),
    ("openai_key", _B + r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{16,}"),
    ("github_token", _B + r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("aws_access_key_id", r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    (
        "aws_secret_key",
        r"(?i:aws_?secret_?access_?key|aws_?secret)[\"']?\s*[=:]\s*[\"']?(?P<v>[A-Za-z0-9/+=]{16,})",
    ),
    (
        "azure_key",
        r"(?:AccountKey|SharedAccessKey|SharedAccessSignature|SharedSecretValue)\s*=\s*(?P<v>[^;\s\"'<>]+)",
    ),
    ("sas_signature", r"[?&;]sig=(?P<v>[A-Za-z0-9%/+=_\-]{8,})"),
    ("jwt", _B + r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"),
    (
        "bearer_token",
        r"(?i:\bbearer)\s+(?P<v>[A-Za-z0-9._~+/\-]{8,}=*)",
    ),
    (
        "basic_auth",
        r"(?i:authorization\b[\"']?\s*[:=]\s*[\"']?basic)\s+(?P<v>[A-Za-z0-9+/]{6,}=*)",
    ),
    (
        "url_password",
        r"://[^\s/:@\"'<>]*:(?P<v>[^\s/@\"'<>]+)@",
    ),
    (
        "password",
        r"(?i:\b(?:password|passwd|api[_-]?key|apikey|client[_-]?secret|secret[_-]?key|access[_-]?token))"
        r"[\"']?\s*[=:]\s*[\"']?(?P<v>[^\s\"',;&<>\[]{6,})",
    ),
)

#: Lower-case trigger substrings -> the shapes they may announce. Every match of a
#: shape (and every key SECRET_KEY_RE matches) contains one of its triggers, so a
#: string containing no trigger needs no regular expression at all; one that
#: does runs only the expressions of the kinds its triggers announce.
SHAPE_TRIGGERS: Final[dict[bytes, tuple[str, ...]]] = {
    b"private": ("private_key",),
    b"sk-": ("anthropic_key", "openai_key"),
    **{t: ("github_token",) for t in (b"ghp_", b"gho_", b"ghs_", b"ghu_", b"ghr_", b"github_pat_")},
    b"akia": ("aws_access_key_id",),
    b"asia": ("aws_access_key_id",),
    b"secret": ("aws_secret_key", "password"),
    b"accountkey": ("azure_key",),
    b"sharedaccess": ("azure_key",),
    b"sharedsecret": ("azure_key",),
    b"sig=": ("sas_signature",),
    b"eyj": ("jwt",),
    b"bearer": ("bearer_token",),
    b"authorization": ("basic_auth",),
    b"://": ("url_password",),
    **{t: ("password",) for t in (b"passw", b"api_key", b"api-key", b"apikey")},
    **{t: ("password",) for t in (b"access_token", b"access-token", b"accesstoken")},
    # keys only (SECRET_KEY_RE): no text expression to run
    b'token"': (),
    b"credential": (),
    b"cookie": (),
}

_KIND_ORDER: Final = {kind: i for i, (kind, _) in enumerate(PATTERNS)}
_PATTERN_OF: Final = dict(PATTERNS)


@functools.cache
def _shape_re(kind: str) -> re.Pattern[str]:
    """The compiled expression of a shape, compiled when first needed: most runs
    never need most of them (the triggers say when), and compiling them all costs
    a few ms at every forwarder start."""
    return re.compile(_PATTERN_OF[kind])


_ENV: Final = "env"


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


@dataclass(slots=True)
class ChunkScan:
    """Trigger matches in one chunk of source bytes (see :meth:`RedactFilter.scan_chunk`)."""

    key: tuple[str, str]  # (source, stream)
    base: int  # source offset of the chunk
    end: int  # ... of its end
    spans: list[tuple[int, int]]  # source (start, end) of matches, by start


@dataclass(slots=True)
class _Scan:
    """Trigger matches in the last two chunks of one (source, stream)."""

    covered_from: int  # source offset from which every match is in ``starts``
    covered_to: int  # ... up to here (exclusive)
    starts: list[int]  # match starts, sorted
    max_ends: list[int]  # max_ends[i]: the furthest end of matches 0..i
    chunk: ChunkScan  # the latest chunk's scan

    @classmethod
    def of(cls, covered_from: int, spans: list[tuple[int, int]], chunk: ChunkScan) -> _Scan:
        starts: list[int] = []
        max_ends: list[int] = []
        furthest = -1
        for a, b in spans:
            starts.append(a)
            furthest = max(furthest, b)
            max_ends.append(furthest)
        return cls(covered_from, chunk.end, starts, max_ends, chunk)

    def clean(self, start: int, end: int) -> bool | None:
        """No match touches ``[start, end)``: True; one does: False; not covered: None."""
        if start < self.covered_from or end > self.covered_to:
            return None
        i = bisect_left(self.starts, end)  # matches 0..i-1 start before ``end``
        return i == 0 or self.max_ends[i - 1] <= start


_PEM_BEGIN: Final = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_END: Final = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_BODY: Final = re.compile(r"^\s*(?:[A-Za-z0-9+/=]*|[A-Za-z\-]+: .*)\s*$")
#: A PEM block longer than this many rows is not one (stops the line-by-line state).
_PEM_MAX_ROWS: Final = 200

_MESSAGE_SAFE_CHARS: Final = MAX_FIELD_BYTES // 4
_TEXT_COLUMNS: Final = tuple(
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


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _json_escaped(value: str) -> str:
    return _json.dumps(value).decode("utf-8")[1:-1]


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret."""
    return name not in _NEVER_SECRET and SECRET_NAME_RE.search(name) is not None


@dataclass
class RedactionPlan:
    """Which literal values to redact, and why each was or was not included."""

    values: dict[str, str] = field(default_factory=dict)  # value -> variable name
    skipped_short: list[str] = field(default_factory=list)  # names whose value was too short
    missing: list[str] = field(default_factory=list)  # named variables that are not set


def plan_env_values(
    named: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    command_env: Mapping[str, str] | None = None,
    secret_names: bool = True,
) -> RedactionPlan:
    """Collect the literal values to redact (see the module docstring for the rules).

    ``named``: variables asked for explicitly; looked up in ``command_env``
    first, then ``environ`` (default ``os.environ``). ``command_env``: wrap
    mode's ``-e NAME=VALUE`` pairs, all redacted except the run context.
    ``secret_names``: also every variable whose name looks secret.
    """
    env = os.environ if environ is None else environ
    cmd = command_env or {}
    plan = RedactionPlan()

    def add(name: str, value: str | None, minimum: int) -> None:
        if not value or not value.strip():
            return
        if len(value) < minimum:
            if name not in plan.skipped_short:
                plan.skipped_short.append(name)
            return
        plan.values.setdefault(value, name)

    for name in named:
        name = name.strip()
        if not name:
            continue
        value = cmd.get(name, env.get(name))
        if value is None:
            plan.missing.append(name)
        add(name, value, MIN_NAMED_VALUE)
    for name, value in cmd.items():
        if name not in _NEVER_SECRET:
            add(name, value, MIN_AUTO_VALUE)
    if secret_names:
        for name, value in env.items():
            if looks_secret(name):
                add(name, value, MIN_AUTO_VALUE)
    return plan


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
                kinds.setdefault(spelling.encode("utf-8", "surrogatepass").lower(), set()).add(_ENV)
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
        if self._literal_re is not None and (kinds is None or _ENV in kinds):
            text = self._literal_re.sub(self._literal, text)
        if self.shapes:
            todo = (
                _KIND_ORDER
                if kinds is None
                else sorted((k for k in kinds if k in _KIND_ORDER), key=_KIND_ORDER.__getitem__)
            )
            for kind in todo:
                text = _shape_re(kind).sub(functools.partial(self._shape, kind), text)
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
            columns = tuple(c for c in _TEXT_COLUMNS if c not in skipped)
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


class RedactFilter(Filter):
    """The redaction step of the chain (see the module docstring).

    Stats: ``redacted:<kind>`` per replaced secret and ``rows_redacted``. A
    private-key block printed line by line (each line its own record) is
    followed per source stream: after a BEGIN line without its END, the
    base64 lines that follow are replaced whole, up to the END line.
    """

    name = "redact"

    def __init__(self, redactor: Redactor, trusted: Mapping[str, str] | None = None) -> None:
        super().__init__()
        redactor.counts = self.stats
        redactor.prefix = "redacted:"
        self.redactor = redactor
        #: Columns whose value the VM side set: never rewritten (they are not the container's).
        skip = {"TimeGenerated", "Level", *(trusted or {}).keys()}
        self._columns = tuple(c for c in _TEXT_COLUMNS if c not in skip)
        #: (source, stream) -> rows seen inside an open private-key block.
        self._pem_open: dict[tuple[str, str], int] = {}
        #: Plain lines about the setup (unset or too-short variables), for the forwarder to print.
        self.notes: list[str] = []
        self._found = redactor._found
        self._scans: dict[tuple[str, str], _Scan] = {}
        #: (source, stream) -> (end offset, lower-cased last bytes) of the last chunk scanned.
        self._tails: dict[tuple[str, str], tuple[int, bytes]] = {}

    def prescan(self, source: str, stream: str, data: bytes, base: int) -> None:
        """Find every trigger in a chunk of source bytes at once (``base``: its offset).

        Called by the runner before the chunk is framed and parsed. A record whose
        ``raw`` bytes are vouched for (``Record.raw``) and whose source span no
        match touches needs no look at all: one scan per chunk instead of one
        per row (the scanner also releases the GIL per call, which costs the
        reading thread a wait whenever the delivery thread wants it). The spans
        of the last two chunks are covered; a record that began earlier falls
        back to its own check. Same as :meth:`scan_chunk` then :meth:`use_scan`.
        """
        scan = self.scan_chunk(source, stream, data, base)
        if scan is not None:
            self.use_scan(scan)

    def scan_chunk(self, source: str, stream: str, data: bytes, base: int) -> ChunkScan | None:
        """The trigger matches of a chunk, for :meth:`use_scan` (None: no fast scanner).

        Chunks of one (source, stream) must be scanned in order. A match
        across the boundary with the previous chunk is found by rescanning that
        chunk's last ``max_trigger - 1`` bytes. (Tried: scanning on a read-ahead
        thread, since the scan releases the GIL; on two shared cores the extra
        thread cost more than it saved.)
        """
        spans_of = self.redactor._spans
        if spans_of is None or not data:
            return None
        key = (source, stream)
        low = data.lower()
        end = base + len(data)
        prev = self._tails.get(key)
        if prev is not None and prev[0] == base:  # contiguous with the last chunk
            low = prev[1] + low
        first = end - len(low)
        keep = self.redactor.max_trigger - 1
        self._tails[key] = (end, low[-keep:] if keep else b"")
        return ChunkScan(key, base, end, [(first + a, first + b) for a, b in spans_of(low)])

    def use_scan(self, scan: ChunkScan) -> None:
        """Make a chunk's matches current (before its records are processed)."""
        cur = self._scans.get(scan.key)
        if cur is None or cur.covered_to != scan.base:  # first chunk, or a new generation
            self._scans[scan.key] = _Scan.of(scan.base, scan.spans, scan)
            return
        prev = cur.chunk
        spans = sorted(prev.spans + scan.spans) if prev.spans else scan.spans
        self._scans[scan.key] = _Scan.of(prev.base, spans, scan)

    def process_batch(self, records: list[Record]) -> list[Record]:
        """The chain's hot loop: records vouched clean by :meth:`prescan` pass untouched."""
        out: list[Record] = []
        append = out.append
        process = self.process
        scans = self._scans
        for r in records:
            if r.raw is not None and not self._pem_open:
                scan = scans.get((r.source, r.stream))
                if scan is not None and scan.clean(r.start, r.end):
                    append(r)  # no trigger anywhere in the record's source bytes
                    continue
            out.extend(process(r))
        return out

    def process(self, record: Record) -> Iterable[Record]:
        raw = record.raw
        if raw is not None and not self._pem_open and not self._found(raw.lower()):
            # Every string of the row is verbatim in ``raw`` and no trigger is in
            # it (a PEM BEGIN line would hit "private"): nothing to replace.
            return (record,)
        row = record.row
        before = self.redactor.hits
        message = row.get("Message")
        if isinstance(message, str):
            if self._pem_open:
                self._pem_line(record, message)
            if "PRIVATE KEY" in message:
                self._pem_start(record, message)
        self.redactor.redact_row(row, columns=self._columns)
        if self.redactor.hits != before:
            self.count("rows_redacted")
        return (record,)

    def _pem_line(self, record: Record, message: str) -> None:
        key = (record.source, record.stream)
        inside = self._pem_open.get(key)
        if inside is None:
            return
        end = _PEM_END.search(message)
        if end is not None:
            del self._pem_open[key]
            if not _PEM_BEGIN.search(message, 0, end.start()):
                record.row["Message"] = marker("private_key") + message[end.end() :]
                self.redactor.count("private_key")
        elif inside < _PEM_MAX_ROWS and _PEM_BODY.match(message):
            self._pem_open[key] = inside + 1
            record.row["Message"] = marker("private_key")
            self.redactor.count("private_key")
        else:
            del self._pem_open[key]

    def _pem_start(self, record: Record, message: str) -> None:
        begins = list(_PEM_BEGIN.finditer(message))
        last = begins[-1] if begins else None
        if last is not None and not _PEM_END.search(message, last.end()):
            self._pem_open[(record.source, record.stream)] = 0
