"""The forwarder's stats for the Azure sink: rows and billed bytes per level and logger.

The encoded path (:meth:`Meter._add_encoded`, rows measured from their JSON and
summed over the list with C-level calls) must count exactly what the plain path
(each row's column text and Properties JSON, summed row by row) counts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hal_logging import schema
from hal_logging.azure.encoding import row_encoder
from hal_logging.pipeline.metering import Meter
from hal_logging.pipeline.model import Record

_NOW = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(level: str, logger: str, task: str, message: str, props: dict[str, Any]) -> dict[str, Any]:
    row = schema.empty_row()
    row.update(TimeGenerated=_NOW, Level=level, LoggerName=logger, TaskID=task, Message=message)
    row["Properties"] = props
    return row


@given(
    st.lists(
        st.builds(
            _row,
            st.sampled_from(["INFO", "WARNING", "ERROR", "DEBUG", "CRITICAL"]),
            st.sampled_from([f"logger.{i}" for i in range(7)]),
            st.sampled_from(["", "t1", "t2"]),
            st.text(max_size=40),  # quotes, backslashes, control and non-ASCII characters
            st.dictionaries(st.text(max_size=4), st.text(max_size=10), max_size=3),
        ),
        max_size=40,
    ),
    st.integers(1, 7),
)
def test_encoded_stats_are_the_row_by_row_stats(rows: list[dict[str, Any]], loggers: int) -> None:
    for i, row in enumerate(rows):  # from one logger (the usual chunk) to seven
        row["LoggerName"] = f"logger.{i % loggers}"
    encoded, plain = Meter(), Meter()
    recs = [Record(row=dict(r), stream="stdout", start=0, end=1) for r in rows]
    total = encoded.add_records(recs, row_encoder())
    assert total == plain.add_records(
        [Record(row=dict(r), stream="stdout", start=0, end=1) for r in rows]
    )
    assert encoded.rows == plain.rows and encoded.billed == plain.billed
    assert encoded.rows_by_logger == plain.rows_by_logger
    assert encoded.billed_by_logger == plain.billed_by_logger
    assert encoded.tasks == plain.tasks
    assert sum(r.size for r in recs) == total
