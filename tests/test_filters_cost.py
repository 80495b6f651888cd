"""Cost rules: levels, drop rules, sampling, folding, the per-task byte budget, and the chain."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from hal_logging import _json
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.filters import (
    BudgetFilter,
    DropFilter,
    FilterConfigError,
    FoldFilter,
    LevelFilter,
    RedactFilter,
    SampleFilter,
    build_filters,
)
from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import empty_row

_offset = [0]


def rec(
    message: str = "m",
    level: str = "INFO",
    logger: str = "agent",
    *,
    task: str = "t1",
    stream: str = "stdout",
    props: dict[str, Any] | None = None,
    rid: str | None = None,
) -> Record:
    start = _offset[0]
    _offset[0] += 100
    row = empty_row()
    row.update(
        TimeGenerated=f"2024-05-01T12:00:{start // 100 % 60:02d}.000000Z",
        Level=level,
        Message=message,
        LoggerName=logger,
        TaskID=task,
        RunID="run",
    )
    row["Properties"] = {
        "hal": {"stream": stream, "record_id": rid or f"id{start}", "format": "text"},
        **(props or {}),
    }
    return Record(row=row, stream=stream, start=start, end=start + 100, source="src")


def run(flt: Filter, records: Iterable[Record], flush: bool = True) -> list[Record]:
    out: list[Record] = []
    for r in records:
        out.extend(flt.process(r))
    if flush:
        out.extend(flt.flush())
    return out


def messages(records: Iterable[Record]) -> list[str]:
    return [r.row["Message"] for r in records]


# -- levels -------------------------------------------------------------------


def test_min_level_drops_below_and_counts() -> None:
    flt = LevelFilter("warning", {})
    out = run(flt, [rec("d", "DEBUG"), rec("i", "INFO"), rec("w", "WARNING"), rec("e", "ERROR")])
    assert messages(out) == ["w", "e"]
    assert flt.stats == {"dropped": 2, "dropped:DEBUG": 1, "dropped:INFO": 1}


def test_logger_levels_by_hierarchy_prefix_and_override_min_level() -> None:
    flt = LevelFilter("INFO", {"httpx": "WARNING", "agent.core": "DEBUG"})
    records = [
        rec("a", "INFO", "httpx"),
        rec("b", "INFO", "httpx._client"),
        rec("c", "WARNING", "httpx._client"),
        rec("d", "INFO", "httpxyz"),  # not a child of httpx
        rec("e", "DEBUG", "agent.core.loop"),  # more specific: DEBUG allowed
        rec("f", "DEBUG", "agent.other"),  # falls back to --min-level INFO
    ]
    assert messages(run(flt, records)) == ["c", "d", "e"]
    assert flt.stats["dropped"] == 3


@pytest.mark.parametrize("bad", ["LOUD", "", "warning!"])
def test_bad_level_says_what_is_expected(bad: str) -> None:
    with pytest.raises(FilterConfigError, match="DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        LevelFilter(None, {"x": bad})


# -- drop rules -----------------------------------------------------------------


def test_drop_rules_on_message_and_logger_counted_per_rule() -> None:
    flt = DropFilter([r"^Weave link: ", r"it/s\]$"], [r"^urllib3\."])
    records = [
        rec("Weave link: https://wandb.ai/x"),
        rec(" 10%|█ | 1/10 [00:01<00:09, 1.00it/s]"),
        rec("connection pool", logger="urllib3.connectionpool"),
        rec("kept: Weave link: inside", logger="urllib3"),
        rec("step 1 done", "ERROR"),
    ]
    out = run(flt, records)
    assert messages(out) == ["kept: Weave link: inside", "step 1 done"]
    assert flt.stats == {
        "dropped": 3,
        "message:^Weave link: ": 1,
        "message:it/s\\]$": 1,
        "logger:^urllib3\\.": 1,
    }


def test_invalid_regex_is_a_config_error() -> None:
    with pytest.raises(FilterConfigError, match="--drop-message"):
        DropFilter(["(unclosed"], [])


# -- sampling ---------------------------------------------------------------------


def test_sampling_is_deterministic_keeps_warnings_and_about_the_rate() -> None:
    records = [rec(f"chatty {i}", logger="httpx._client", rid=f"rid-{i}") for i in range(2000)]
    warnings = [rec("slow", "WARNING", "httpx", rid=f"w-{i}") for i in range(50)]
    others = [rec("agent", logger="agent", rid=f"a-{i}") for i in range(50)]
    flt = SampleFilter({"httpx": 0.1})
    out = run(flt, records + warnings + others)
    kept = [r for r in out if r.row["LoggerName"] == "httpx._client"]
    assert 120 <= len(kept) <= 280  # 10% of 2000, loosely
    assert sum(r.row["Level"] == "WARNING" for r in out) == 50
    assert sum(r.row["LoggerName"] == "agent" for r in out) == 50
    assert flt.stats["dropped"] + flt.stats["kept_sampled"] == 2000
    again = run(SampleFilter({"httpx": "10%"}), records)
    assert [r.row["Message"] for r in again] == [r.row["Message"] for r in kept]


def test_sampling_rate_zero_and_one_and_bad_rates() -> None:
    records = [rec(f"x{i}", rid=f"z{i}") for i in range(20)]
    assert run(SampleFilter({"*": 0}), records) == []
    assert len(run(SampleFilter({"agent": 1.0}), records)) == 20
    for bad in ("1.5", "-0.1", "lots"):
        with pytest.raises(FilterConfigError, match="rate"):
            SampleFilter({"x": bad})


# -- folding -------------------------------------------------------------------------


def test_fold_keeps_first_then_one_summary_row() -> None:
    flt = FoldFilter()
    repeated = [rec("Retrying request", "WARNING") for _ in range(5)]
    out = run(flt, [rec("start"), *repeated, rec("next")])
    assert messages(out) == [
        "start",
        "Retrying request",
        "[repeated 4 more times] Retrying request",
        "next",
    ]
    summary = out[2]
    assert summary.row["Level"] == "WARNING"
    assert summary.row["Properties"]["hal"]["repeated"] == 4
    assert summary.row["Properties"]["hal"]["repeated_since"] == repeated[1].row["TimeGenerated"]
    # the summary carries the last folded record's span and id
    assert (summary.start, summary.end) == (repeated[-1].start, repeated[-1].end)
    assert (
        summary.row["Properties"]["hal"]["record_id"]
        == repeated[-1].row["Properties"]["hal"]["record_id"]
    )
    assert summary.row["TimeGenerated"] == repeated[-1].row["TimeGenerated"]
    assert flt.stats == {"folded": 4, "summaries": 1}
    # the input record's own row was not changed
    assert "repeated" not in repeated[-1].row["Properties"]["hal"]


def test_fold_at_end_of_input_and_periodic_flush() -> None:
    flt = FoldFilter()
    out = run(flt, [rec("tick") for _ in range(3)], flush=False)
    assert messages(out) == ["tick"]
    assert flt.held_starts() != {}
    out += list(flt.flush())
    assert messages(out) == ["tick", "[repeated 2 more times] tick"]
    assert flt.held_starts() == {}
    # still the same run after a flush: later repeats fold again
    out = run(flt, [rec("tick"), rec("tick")])
    assert messages(out) == ["[repeated 2 more times] tick"]
    assert list(flt.flush()) == []


def test_fold_per_stream_and_only_truly_identical_rows() -> None:
    flt = FoldFilter()
    records = [
        rec("same", stream="stdout"),
        rec("same", stream="stderr"),
        rec("same", stream="stdout"),
        rec("same", stream="stderr"),
        rec("step done", props={"step": 1}),
        rec("step done", props={"step": 2}),
        rec("step done", "ERROR", props={"step": 2}),
    ]
    out = run(flt, records)
    assert messages(out) == [
        "same",
        "same",
        "[repeated 1 more times] same",  # stdout run closed by "step done" (stdout)
        "step done",
        "step done",  # other Properties: not folded
        "step done",  # other Level: not folded
        "[repeated 1 more times] same",  # stderr run closed at the end
    ]
    assert [r.stream for r in out][-1] == "stderr"
    assert [r.row["Properties"].get("step") for r in out[3:6]] == [1, 2, 2]
    assert flt.stats == {"folded": 2, "summaries": 2}


def test_fold_summary_cuts_a_long_message() -> None:
    flt = FoldFilter()
    long = "x" * 50_000
    out = run(flt, [rec(long), rec(long), rec(long)])
    assert out[0].row["Message"] == long
    assert len(out[1].row["Message"].encode()) < 1200


# -- budget ------------------------------------------------------------------------


def test_budget_per_task_then_only_warnings_with_one_notice() -> None:
    size = len(_json.dumps(rec("x" * 100).row))
    flt = BudgetFilter(size * 3 + 10)
    records = [rec("x" * 100, task="t1") for _ in range(5)]
    records += [rec("x" * 100, "WARNING", task="t1"), rec("x" * 100, task="t1")]
    records += [rec("x" * 100, task="t2") for _ in range(2)]
    out = run(flt, records)
    levels_tasks = [(r.row["TaskID"], r.row["Level"], r.row["LoggerName"]) for r in out]
    assert levels_tasks == [
        ("t1", "INFO", "agent"),
        ("t1", "INFO", "agent"),
        ("t1", "INFO", "agent"),
        ("t1", "WARNING", "hal_logging.budget"),
        ("t1", "WARNING", "agent"),
        ("t2", "INFO", "agent"),
        ("t2", "INFO", "agent"),
    ]
    notice = out[3]
    assert "budget" in notice.row["Message"] and "WARNING" in notice.row["Message"]
    assert notice.row["RunID"] == "run"
    assert notice.start == notice.end == records[3].start  # covers nothing it did not deal with
    assert set(notice.row) == set(empty_row())
    assert flt.stats["dropped"] == 3
    assert flt.stats["tasks_over_budget"] == 1
    assert flt.stats["notices"] == 1
    assert flt.stats["dropped_bytes"] == 3 * size


def test_budget_must_be_positive() -> None:
    with pytest.raises(FilterConfigError):
        BudgetFilter(0)


# -- the chain -------------------------------------------------------------------------


def test_default_chain_is_redaction_then_folding() -> None:
    chain = build_filters(ForwardConfig(), {"RunID": "run"})
    assert [type(f) for f in chain] == [RedactFilter, FoldFilter]


def test_full_chain_order_and_nothing_lost_silently() -> None:
    config = ForwardConfig(
        min_level="INFO",
        logger_levels={"httpx": "WARNING"},
        drop_message=["^noise"],
        drop_logger=["^urllib3"],
        sample={"chatty": 0.5},
        task_byte_budget=10_000,
    )
    chain = build_filters(config, {})
    assert [f.name for f in chain] == ["redact", "levels", "drop", "sample", "fold", "budget"]
    records = (
        [rec(f"debug {i}", "DEBUG") for i in range(10)]
        + [rec(f"h {i}", logger="httpx") for i in range(10)]
        + [rec(f"noise {i}") for i in range(10)]
        + [rec("pool", logger="urllib3.pool") for i in range(10)]
        + [rec(f"c {i}", logger="chatty", rid=f"c{i}") for i in range(40)]
        + [rec("same") for _ in range(10)]
        + [rec(f"big {i} " + "y" * 300) for i in range(100)]
    )
    out: list[Record] = []
    for r in records:
        batch = [r]
        for flt in chain:
            batch = [o for b in batch for o in flt.process(b)]
        out.extend(batch)
    tail: list[Record] = []
    for flt in chain:
        tail = [o for b in tail for o in flt.process(b)] + list(flt.flush())
    out.extend(tail)
    added = sum(f.stats.get("summaries", 0) + f.stats.get("notices", 0) for f in chain)
    removed = sum(f.stats.get("dropped", 0) + f.stats.get("folded", 0) for f in chain)
    assert len(out) == len(records) - removed + added
    assert added == 2 and removed > 0
