"""Redaction's fast paths give exactly the rows of the careful one.

The runner scans each chunk of source bytes once for redaction triggers
(:meth:`RedactFilter.prescan`) and lets records whose source span holds none pass
untouched (``Record.raw``). These tests push random container output, secrets
included, through the real :class:`Runner` in random chunkings and compare the
rows with those the filter makes record by record, with no fast path at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.filters.redact import ChunkScan, RedactFilter
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import Record, Sink, WriteResult
from hal_logging.pipeline.parsing import Parser
from hal_logging.pipeline.runner import Runner
from hal_logging.pipeline.sources import Chunk, Closed, Event, Opened
from hal_logging.redaction import Redactor

KEY = "sk-proj-" + "Zq8xW3vB7nM2kL9pQ4rT6yU1iO5aS0dF"
ENV_VALUE = "hunter2-correct-horse"
TRUSTED = {"RunID": "run-1"}

# Pieces of text: plain words, near misses, triggers that are no secret, secrets.
_PIECES = [
    "step",
    "done",
    "tokens",
    "https://api.example.com/v1",
    "SK-",
    "private",
    "PRIVATE KEY",
    "password",
    "password=swordfish99",
    "Authorization: Bearer abcdefghijklmnop",
    "postgres://user:s3cretpw@db:5432/x",
    KEY,
    ENV_VALUE,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
    "AKIAIOSFODNN7EXAMPLE",
    '"quoted"',
    "back\\slash",
    "café",
    "\x1b[31mred\x1b[0m",
]
_text = st.lists(st.sampled_from(_PIECES), max_size=6).map(" ".join)


def _wire(message: str, props: dict[str, Any], claims: bool) -> bytes:
    row = schema.empty_row()
    row.update(
        TimeGenerated="2024-05-01T12:00:00.123456Z",
        Level="INFO",
        Message=message,
        LoggerName="agent",
        LogType="AgentLog",
        RunID="other-run" if claims else "run-1",
    )
    row["Properties"] = props
    return schema.WIRE_PREFIX + _json.dumps(row)[1:]


_line = st.one_of(
    _text.map(str.encode),
    st.builds(
        _wire,
        _text,
        st.dictionaries(st.sampled_from(["step", "token", "note", "url"]), _text, max_size=3),
        st.booleans(),
    ),
)


class _Source:
    mode = "files"

    def __init__(self, data: bytes, cuts: Sequence[int]) -> None:
        self.data = data
        self.cuts = cuts

    def events(self) -> Iterator[Event]:
        yield Opened("g", "stdout", "src", 0)
        pos = 0
        for size in self.cuts:
            if pos >= len(self.data):
                break
            yield Chunk("g", self.data[pos : pos + size])
            pos += size
        if pos < len(self.data):
            yield Chunk("g", self.data[pos:])
        yield Closed("g")

    def close(self) -> None:
        pass


class _Collect(Sink):
    name = "collect"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> WriteResult:
        with self.lock:
            self.rows.extend(r.row for r in records)
        return WriteResult(delivered=len(records))


def _filter() -> RedactFilter:
    return RedactFilter(Redactor({ENV_VALUE: "DB_PASSWORD"}), TRUSTED)


def _through_runner(
    data: bytes, cuts: Sequence[int]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    flt = _filter()
    sink = _Collect()
    config = ForwardConfig(no_checkpoint=True, fold_repeats=False)
    Runner(config.inputs, config.delivery, _Source(data, cuts), sink, trusted=TRUSTED, filters=[flt]).run()
    return sink.rows, dict(flt.stats)


def _record_by_record(data: bytes) -> tuple[list[dict[str, Any]], dict[str, int]]:
    flt = _filter()
    parser = Parser(stream="stdout", source="src", trusted=TRUSTED)
    framer = Framer("stdout")
    records = []
    for line in [*framer.feed(data, 0.0), *framer.finish(0.0)]:
        records.extend(parser.feed(line))
    records.extend(parser.finish())
    rows = []
    for r in records:
        r.raw = None  # no fast path: every row is looked at
        rows.extend(x.row for x in flt.process(r))
    return rows, dict(flt.stats)


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        row = dict(row)
        row["TimeGenerated"] = ""  # text rows take the time they were read
        out.append(row)
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_line, min_size=1, max_size=30),
    st.lists(st.integers(1, 300), min_size=1, max_size=40),
)
def test_prescan_redacts_exactly_like_the_careful_path(lines: list[bytes], cuts: list[int]) -> None:
    data = b"\n".join(lines) + b"\n"
    fast, fast_stats = _through_runner(data, cuts)
    slow, slow_stats = _record_by_record(data)
    assert _comparable(fast) == _comparable(slow)
    assert fast_stats == slow_stats


def test_secret_split_across_chunks_is_found() -> None:
    line = f"auth header: Authorization: Bearer {KEY}".encode()
    data = b"ok\n" * 3 + line + b"\n" + b"fine\n"
    for cut in range(1, len(data)):
        rows, stats = _through_runner(data, [cut, len(data)])
        assert not any(KEY in r["Message"] for r in rows), cut
        assert stats.get("rows_redacted") == 1


def test_clean_rows_pass_without_a_look_and_keep_their_identity() -> None:
    lines = [_wire(f"step {i} done", {"step": i}, False) for i in range(50)]
    data = b"\n".join(lines) + b"\n"
    rows, stats = _through_runner(data, [4096])
    assert [r["Message"] for r in rows] == [f"step {i} done" for i in range(50)]
    assert stats.get("rows_redacted", 0) == 0


def test_a_record_that_began_before_the_scanned_span_is_looked_at() -> None:
    """Records vouched clean together only when each lies inside what the scans cover."""
    flt = _filter()
    flt.use_scan(ChunkScan(("src", "stdout"), 100, 200, []))  # no trigger in [100, 200)
    secret = f"password is {ENV_VALUE}"
    recs = []
    for start in (50, 120):  # the first began before the scanned span
        row = schema.empty_row()
        row.update(Message=secret, LoggerName="agent", Level="INFO")
        recs.append(Record(row, "stdout", start, start + 30, "src", raw=secret.encode()))
    out = flt.process_batch(recs)
    assert ENV_VALUE not in out[0].row["Message"]
    assert out[1].row["Message"] == secret  # vouched for by the scan (see Record.raw)
    assert flt.process_batch(recs[1:]) == recs[1:]
