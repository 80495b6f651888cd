"""Per-task byte budget: ``--task-byte-budget BYTES``.

Bytes are counted per TaskID on the serialised row (what Azure bills, roughly:
the JSON of the thirteen columns). While a task is under its budget every row
passes; the first row below WARNING that would go over it is dropped and
replaced by one notice row (Level WARNING, LoggerName ``hal_logging.budget``)
saying so; from then on only WARNING and above pass for that task. The count
lives in the forwarder process: a new forwarder run for the same task starts
from zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hal_logging import _json
from hal_logging.pipeline.filters.levels import WARNING, FilterConfigError, level_of
from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import (
    CONTEXT_COLUMNS,
    HAL_FORMAT,
    HAL_RECORD_ID,
    HAL_STREAM,
    PROP_HAL,
)

NOTICE_LOGGER = "hal_logging.budget"


def row_size(record: Record) -> int:
    """Serialised size of the record's row in bytes (``Record.size`` when batching set it)."""
    return record.size if record.size > 0 else len(_json.dumps(record.row))


class BudgetFilter(Filter):
    """Stats: ``dropped``, ``dropped_bytes``, ``tasks_over_budget``, ``notices``."""

    name = "budget"

    def __init__(self, budget: int) -> None:
        super().__init__()
        if budget <= 0:
            raise FilterConfigError(f"--task-byte-budget {budget}: give a positive number of bytes")
        self.budget = budget
        self.used: dict[str, int] = {}
        self.over: set[str] = set()

    def process(self, record: Record) -> Iterable[Record]:
        row = record.row
        task = row.get("TaskID")
        task = task if isinstance(task, str) else ""
        size = row_size(record)
        keep_anyway = level_of(row) >= WARNING
        if task in self.over:
            if keep_anyway:
                self.used[task] = self.used.get(task, 0) + size
                return (record,)
            return self._drop(size)
        used = self.used.get(task, 0)
        if used + size <= self.budget or keep_anyway:
            self.used[task] = used + size
            return (record,)
        self.over.add(task)
        self.count("tasks_over_budget")
        self.count("notices")
        notice = self._notice(record, task, used)
        self._drop(size)
        return (notice,)

    def _drop(self, size: int) -> tuple[Record, ...]:
        self.count("dropped")
        self.count("dropped_bytes", size)
        return ()

    def _notice(self, record: Record, task: str, used: int) -> Record:
        src = record.row
        row: dict[str, Any] = {"TimeGenerated": src.get("TimeGenerated", "")}
        row["Level"] = "WARNING"
        row["Message"] = (
            f"task byte budget reached: {used:,} bytes forwarded for task {task or '(none)'} "
            f"(budget {self.budget:,}); from here on only WARNING and above are forwarded "
            "for this task (--task-byte-budget)"
        )
        row["LoggerName"] = NOTICE_LOGGER
        for col in CONTEXT_COLUMNS:
            row[col.name] = src.get(col.name, "")
        props = src.get("Properties")
        hal = props.get(PROP_HAL) if isinstance(props, dict) else None
        rid = hal.get(HAL_RECORD_ID) if isinstance(hal, dict) else None
        row["Properties"] = {
            PROP_HAL: {
                HAL_STREAM: record.stream,
                HAL_RECORD_ID: f"{rid or record.start}-budget",
                HAL_FORMAT: "notice",
                "budget": self.budget,
                "used": used,
            }
        }
        # Zero-width span before the dropped row: delivering the notice never
        # moves a checkpoint past a row that was not dealt with.
        return Record(
            row=row,
            stream=record.stream,
            start=record.start,
            end=record.start,
            source=record.source,
        )
