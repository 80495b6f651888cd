"""Text lines carry their read time, bounded by the wire records written after them."""

from __future__ import annotations

from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.parsing import Parser
from tests.forward_helpers import wire_line


def _rows(data: bytes, read_at: float) -> list[dict[str, object]]:
    framer = Framer("stdout")
    parser = Parser(stream="stdout", source="s", trusted={})
    lines = framer.feed(data, read_at) + framer.finish(read_at)
    return [r.row for r in parser.feed_many(lines) + parser.finish()]


def test_prints_sort_before_the_records_logged_after_them() -> None:
    # Wire records written in 2024; the prints between them are read "now".
    data = b"print one\n" + wire_line(1) + b"\nprint two\n" + wire_line(2) + b"\nprint three\n"
    rows = _rows(data, read_at=1_900_000_000.0)
    order = sorted(range(len(rows)), key=lambda i: (str(rows[i]["TimeGenerated"]), i))
    assert order == list(range(len(rows)))  # sorting by time keeps the printed order
    times = [str(r["TimeGenerated"]) for r in rows]
    assert times[0] == times[1] and times[2] == times[3]  # bounded by the next record
    assert times[4].startswith("2030-")  # nothing after it: the read time stays


def test_text_with_its_own_timestamp_is_not_moved() -> None:
    data = b"2031-01-01 00:00:00,000 - agent - INFO - stamped\n" + wire_line(1) + b"\n"
    rows = _rows(data, read_at=1_900_000_000.0)
    assert str(rows[0]["TimeGenerated"]).startswith("2031-01-01T00:00:00")
