"""The workspace's fast insert path stores exactly the rows, in order, once each.

Batches go in multi-row statements of a few fixed sizes, padded, with the
context columns bound once per run of rows that share them; records carry
their stored text from the run's stats (``Record.columns``) and insert tuples
made on the reading thread (``SqliteSink.prepare``). Whatever the path, the
table must hold what the plain per-row tuples say.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging import schema
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.sinks.sqlite import (
    STATEMENT_SIZES,
    SqliteSink,
    Workspace,
    row_values,
)
from hal_logging.pipeline.summary import RunStats


def _row(i: int, *, run: str = "r", task: str = "t", rid: bool = True) -> dict[str, Any]:
    row = schema.empty_row()
    row.update(
        TimeGenerated=f"2024-05-01T00:00:{i % 60:02d}.000000Z",
        Level="INFO",
        Message=f"line {i} é",
        LoggerName="agent",
        RunID=run,
        TaskID=task,
        LogType="AgentLog",
    )
    props: dict[str, Any] = {"n": i}
    if rid:
        props["hal"] = {"record_id": f"id-{i:06d}", "stream": "stdout", "offset": i}
    row["Properties"] = props
    return row


def _stored(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        cols = ", ".join(f'"{c}"' for c in (*schema.COLUMN_NAMES, "_record_id"))
        return conn.execute(f'SELECT {cols} FROM "{schema.TABLE_NAME}" ORDER BY rowid').fetchall()


@pytest.mark.parametrize("n", [1, 15, 16, 17, 1023, 1024, 1025, 2500, 4097])
def test_any_batch_length_is_stored_whole_and_in_order(tmp_path: Path, n: int) -> None:
    rows = [_row(i) for i in range(n)]
    ws = Workspace(str(tmp_path / "w.db"))
    assert ws.insert_rows(rows) == (n, 0)
    assert ws.insert_rows(rows) == (0, n)  # all of them again: nothing twice
    ws.close()
    assert _stored(tmp_path / "w.db") == [row_values(r) for r in rows]


def test_only_a_few_statement_sizes_are_ever_prepared(tmp_path: Path) -> None:
    """Memory stays flat: one prepared statement per size, not per batch length."""
    from hal_logging.pipeline.sinks import sqlite as mod

    ws = Workspace(str(tmp_path / "w.db"))
    start = 0
    for n in range(1, 400, 7):
        ws.insert_rows([_row(i) for i in range(start, start + n)])
        start += n
    ws.close()
    assert set(mod._insert_sql_cache) <= set(STATEMENT_SIZES)
    assert len(_stored(tmp_path / "w.db")) == start


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["r1", "r2", ""]), st.sampled_from(["t1", "t2"]), st.booleans()),
        min_size=1,
        max_size=120,
    )
)
def test_mixed_contexts_and_missing_ids_keep_order(
    tmp_path_factory: pytest.TempPathFactory, spec: list[tuple[str, str, bool]]
) -> None:
    db = tmp_path_factory.mktemp("ws") / "w.db"
    rows = [_row(i, run=run, task=task, rid=rid) for i, (run, task, rid) in enumerate(spec)]
    # A duplicate inside the batch is ignored like one already stored.
    dup = next((r for r in rows if "hal" in r["Properties"]), None)
    batch = rows + ([dup] if dup is not None else [])
    ws = Workspace(str(db))
    inserted, ignored = ws.insert_rows(batch)
    ws.close()
    assert (inserted, ignored) == (len(rows), len(batch) - len(rows))
    assert _stored(db) == [row_values(r) for r in rows]


def test_sink_stores_the_text_the_stats_measured(tmp_path: Path) -> None:
    """Prepared records (stats, then prepare on the reading thread) and plain ones
    end up the same in the table; the billed estimate is the stored text."""
    rows = [_row(i, run="r" if i % 3 else "other") for i in range(300)]
    records = [Record(dict(r), "stdout", i, i + 1, "src") for i, r in enumerate(rows)]
    stats = RunStats()
    total = stats.add_records(records[:200])
    sink = SqliteSink(str(tmp_path / "w.db"))
    sink.prepare(records[:150])  # 150..199 measured but not prepared, 200.. neither
    result = sink.write(records)
    sink.close()
    assert (result.delivered, result.duplicates) == (300, 0)
    stored = _stored(tmp_path / "w.db")
    assert stored == [row_values(r) for r in rows]
    text = sum(len("".join(v for v in s[:12]).encode()) + len(s[12].encode()) for s in stored[:200])
    assert total == text == stats.total_billed


_ODD_VALUES = st.one_of(
    # non-ASCII, control characters, lone surrogates (orjson refuses these too)
    st.text(st.characters(blacklist_categories=()), max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond 64 bits: orjson refuses
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(0, 9)), _ODD_VALUES, max_size=4),
        min_size=1,
        max_size=20,
    ),
    st.text(max_size=20),
)
def test_odd_properties_are_billed_as_stored(
    tmp_path_factory: pytest.TempPathFactory, props: list[dict[Any, Any]], message: str
) -> None:
    """Whatever Properties hold (values orjson refuses, non-str keys, non-ASCII,
    surrogates), the billed estimate is the UTF-8 length of the text stored,
    and the text is what the plain per-row tuples say."""
    db = tmp_path_factory.mktemp("ws") / "w.db"
    rows = []
    for i, p in enumerate(props):
        row = _row(i)
        row["Message"] = message + str(i)
        row["Properties"] = {**p, "hal": row["Properties"]["hal"]}
        rows.append(row)
    records = [Record(r, "stdout", i, i + 1, "src") for i, r in enumerate(rows)]
    stats = RunStats()
    total = stats.add_records(records)
    sink = SqliteSink(str(db))
    sink.prepare(records)
    assert sink.write(records).delivered == len(rows)
    sink.close()
    with sqlite3.connect(db) as conn:
        conn.text_factory = bytes  # the stored bytes, surrogates and all
        cols = ", ".join(f'"{c}"' for c in schema.COLUMN_NAMES)
        stored = conn.execute(f'SELECT {cols} FROM "{schema.TABLE_NAME}" ORDER BY rowid').fetchall()
    expected = [tuple(v.encode() for v in row_values(r)[:13]) for r in rows]
    assert stored == expected
    assert total == stats.total_billed == sum(len(v) for s in stored for v in s)
