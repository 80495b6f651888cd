"""Serialise once, fill each request: the Azure sink's part in the run's stats and batching.

* The run's stats serialise each usual row with the sink's encoder and measure
  it from those bytes. Those bytes must be exactly what the uploader's careful
  path gives, and the billed size exactly what the stats give without an
  encoder, whatever the strings hold (quotes, backslashes, control characters,
  non-ASCII, lone surrogates) — hypothesis checks both.
* The batcher closes an Azure batch before the next chunk's rows would
  overflow one request, so a run sends about as many requests as its JSON
  needs (not one full and one small per batch), none over the limit.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.azure.uploader import MAX_REQUEST_BYTES, Uploader
from hal_logging.pipeline.batching import Batcher
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.sinks.azure import AzureSink
from hal_logging.pipeline.summary import RunStats
from tests.azure_helpers import client_env, started_emulator

_STRING_COLS = [c for c in schema.COLUMN_NAMES if c != "Properties"]


_OUT_OF_WINDOW = ("2001-01-01T00:00:00.000001Z", "not a time")


def _now(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_text = st.text(
    alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40
)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {c: draw(_text) for c in _STRING_COLS}
    row["TimeGenerated"] = draw(
        st.sampled_from(
            [_now(), _now(timedelta(minutes=-5)), *_OUT_OF_WINDOW]
        )
    )
    row["Level"] = draw(st.sampled_from(schema.LEVELS))
    row["Properties"] = draw(st.dictionaries(_text, _json_value, max_size=4))
    if draw(st.booleans()):
        row["Properties"]["long"] = "x" * draw(st.sampled_from([10, 70_000]))
    if draw(st.integers(0, 9)) == 0:
        row["Extra"] = "an undeclared column"  # rows with more keys are measured the slow way
    if draw(st.integers(0, 19)) == 0:  # not from the parser: measured, if less exactly
        row[draw(st.sampled_from(["TaskID", "Message", "Level"]))] = draw(
            st.sampled_from([None, 7, 2.5])
        )
    return row


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=6))
def test_encoded_rows_and_sizes_equal_the_careful_path(batch: list[dict[str, Any]]) -> None:
    uploader = Uploader("https://127.0.0.1:9", "dcr-test")
    try:
        plain = [Record(copy.deepcopy(r), "stdout", i, i + 1) for i, r in enumerate(batch)]
        encoded = [Record(copy.deepcopy(r), "stdout", i, i + 1) for i, r in enumerate(batch)]
        total_plain = RunStats().add_records(plain)
        total_encoded = RunStats().add_records(encoded, uploader.row_encoder())
        if not all(type(row[c]) is str for row in batch for c in _STRING_COLS):
            assert all(r.size > 0 for r in encoded)  # an odd row: measured, never an error
            return
        assert total_encoded == total_plain
        for a, b, row in zip(plain, encoded, batch, strict=True):
            assert b.size == a.size
            careful = uploader.encode_each([copy.deepcopy(row)])[0]
            try:
                plain_json: bytes | None = orjson.dumps(row)
            except TypeError:  # lone surrogates: the careful path's sanitising dumps
                plain_json = None
            usual = (
                row["TimeGenerated"] not in _OUT_OF_WINDOW
                and plain_json is not None
                and len(plain_json) <= schema.MAX_FIELD_BYTES
            )
            # The usual row: exactly the careful path's bytes; the rest is left to it.
            assert (b.prepared is not None) == usual
            if usual:
                assert b.prepared == careful
    finally:
        uploader.close()


def test_prepare_counts_each_rows_json_and_a_comma() -> None:
    uploader = Uploader("https://127.0.0.1:9", "dcr-test")
    sink = AzureSink(uploader)
    try:
        recs = []
        for i in range(5):
            row = schema.empty_row()
            row.update(TimeGenerated=_now(), Level="INFO", Message=f"m{i}", Properties={"i": i})
            recs.append(Record(row, "stdout", i, i + 1))
        plain = copy.deepcopy(recs)
        RunStats().add_records(plain)
        RunStats().add_records(recs[:3], sink.row_encoder())  # 3 prepared by the stats
        assert [r.size for r in recs[:3]] == [r.size for r in plain[:3]]
        assert all(r.prepared is not None and r.columns is None for r in recs[:3])
        total = sink.prepare(recs)  # 2 by prepare itself
        assert all(type(r.prepared) is bytes for r in recs)
        assert total == sum(len(r.prepared) + 1 for r in recs)
        assert _json.dumps(recs[0].row) == recs[0].prepared  # the row is now a Fragment of them
    finally:
        sink.close()


def test_batcher_closes_before_the_next_add_would_overflow() -> None:
    b = Batcher(max_rows=10**9, max_bytes=10**12, interval=60, sink_bytes=1000)
    rec = [Record({}, "stdout", 0, 1)]
    b.add(rec, 0.0, 1, 320)
    assert not b.full  # 320 + 1.25 * 320 < 1000
    b.add(rec, 0.0, 1, 320)
    assert b.full  # 640 + 400 >= 1000: the next 320 would likely not fit
    b.take()
    assert not b.full and b.sink_bytes == 0
    plain = Batcher(max_rows=10**9, max_bytes=10**12, interval=60)
    plain.add(rec, 0.0, 1, 10**9)
    assert not plain.full  # no sink measure: billed bytes and rows decide


@pytest.mark.timeout(120)
def test_requests_are_filled_not_one_full_and_one_small_per_batch(tmp_path: Path) -> None:
    src = tmp_path / "run.log"
    with src.open("wb") as fh:
        for i in range(12_000):
            row = schema.empty_row()
            row.update(
                TimeGenerated=_now(),
                Level="INFO",
                Message=f"step {i}: model replied with {i % 500} tokens",
                LoggerName="agent",
                LogType="AgentLog",
                Properties={"step": i, "observation": "ok " * (i % 90)},
            )
            fh.write(schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n")
    with started_emulator(tmp_path) as emu:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hal_logging.cli.forward",
                "-q",
                "--run-id",
                "R1",
                "--flush-interval",
                "60",  # only size closes batches here, however slow the machine
                str(src),
            ],
            env=client_env(emu.env()),
            capture_output=True,
            timeout=100,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        requests = [r for r in emu.workspace.requests() if r["status"] == 204]
        assert sum(r["rows"] for r in requests) == 12_000
        sizes = [r["uncompressed_bytes"] for r in requests]
        assert max(sizes) <= MAX_REQUEST_BYTES
        # Filled requests: within a few of the fewest the JSON allows (the old
        # billed-bytes batches sent ~1.5x this: one full and one small each).
        fewest = math.ceil(sum(sizes) / MAX_REQUEST_BYTES)
        assert len(requests) <= fewest * 1.25 + 1, sizes
