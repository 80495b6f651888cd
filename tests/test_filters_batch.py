"""Filters' batch loops (the runner's path) do what ``process`` does record by record."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging.pipeline.filters.fold import FoldFilter
from hal_logging.pipeline.model import Record
from hal_logging.schema import empty_row


def _record(i: int, stream: str, message: str, level: str, props: dict[str, Any]) -> Record:
    row = empty_row()
    row.update(
        TimeGenerated=f"2024-05-01T00:00:{i % 60:02d}.000000Z",
        Level=level,
        Message=message,
        LoggerName="agent",
    )
    row["Properties"] = {**props, "hal": {"record_id": f"id{i}", "stream": stream}}
    return Record(row, stream, i * 10, i * 10 + 9, "src")


_spec = st.tuples(
    st.sampled_from(["stdout", "stderr"]),
    st.sampled_from(["retrying", "done", "retrying"]),
    st.sampled_from(["INFO", "INFO", "WARNING"]),
    st.sampled_from([{}, {}, {"n": 1}]),
)


def _view(records: list[Record]) -> list[tuple[Any, ...]]:
    return [
        (r.stream, r.start, r.row["Message"], r.row["Level"], r.row["Properties"]) for r in records
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(_spec, max_size=60), st.lists(st.integers(1, 9), min_size=1, max_size=20))
def test_fold_batches_equal_one_by_one(spec: list[tuple[Any, ...]], cuts: list[int]) -> None:
    one, batched = FoldFilter(), FoldFilter()
    a = [_record(i, *s) for i, s in enumerate(spec)]
    b = [_record(i, *s) for i, s in enumerate(spec)]
    want: list[Record] = []
    for r in a:
        want.extend(one.process(r))
    want.extend(one.flush())
    got: list[Record] = []
    pos = 0
    for cut in cuts * 10:
        if pos >= len(b):
            break
        got.extend(batched.process_batch(b[pos : pos + cut]))
        pos += cut
    got.extend(batched.process_batch(b[pos:]))
    got.extend(batched.flush())
    assert _view(got) == _view(want)
    assert batched.stats == one.stats
