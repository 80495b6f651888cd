"""What a forwarder run did, in words and JSON: the closing summary and the dry-run report.

The orchestrator reads ``--summary-json`` (machine) and people read stderr
(human). Both come from one :class:`RunStats`: the run's counters
(:class:`~hal_logging.pipeline.metering.Meter`, which the runner updates on its hot
path) and the facts of its end (delivery, command status, where rows were kept),
which this module only reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hal_logging import schema
from hal_logging.pipeline.metering import Meter

__all__ = ["RunStats", "human_bytes"]

_GB = 1_000_000_000


@dataclass
class RunStats(Meter):
    """One run: its counters (:class:`Meter`) and its outcome; reported here."""

    started: float = field(default_factory=time.monotonic)
    mode: str = "files"
    sink: str = ""
    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    undelivered: int = 0
    filters: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    where_kept: list[str] = field(default_factory=list)
    command_status: int | None = None
    command_seconds: float | None = None
    #: exited | killed | not-found | cannot-execute (hal_logging.pipeline.outcome)
    command_outcome: str | None = None
    exit_status: int = 0
    interrupted: str | None = None
    #: The summary JSON's safety facts (see the README's "summary JSON" table):
    #: the destination's id, the --exit-status policy, the delivery outcome
    #: (an outcome.Delivery's JSON), where checkpoints let the run start.
    destination: str = ""
    exit_status_policy: str = "auto"
    delivery: dict[str, Any] | None = None
    resumed: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def finish(self) -> None:
        self.elapsed = time.monotonic() - self.started

    def to_json(
        self, *, price_per_gb: float | None = None, tasks_per_month: int | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "sink": self.sink,
            "exit_status": self.exit_status,
            "rows": self.total_rows,
            "rows_by_level": {lv: self.rows.get(lv, 0) for lv in schema.LEVELS},
            "lines_read": self.lines,
            "bytes_read": self.bytes_read,
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "undelivered": self.undelivered,
            "where_kept": self.where_kept,
            "estimated_billed_bytes": self.total_billed,
            "estimated_billed_gb": self.total_billed / _GB,
            "filters": self.filters,
            "elapsed_seconds": round(self.elapsed, 3),
            "notes": self.notes,
            "destination": self.destination,
            "exit_status_policy": self.exit_status_policy,
            "command_status": self.command_status,
            "command_outcome": self.command_outcome,
            "delivery": self.delivery
            or {
                "complete": not (self.undelivered or self.dead_lettered),
                "status": 0,
                "undelivered": self.undelivered + self.dead_lettered,
                "where_kept": self.where_kept,
            },
            "resumed": [{"input": p, "offset": n} for p, n in sorted(self.resumed.items())],
        }
        if self.command_status is not None:
            out["command_exit_status"] = self.command_status  # older name, same value
            out["command_seconds"] = round(self.command_seconds or 0.0, 3)
        if self.interrupted:
            out["interrupted"] = self.interrupted
        if price_per_gb is not None and tasks_per_month is not None:
            out["cost"] = self.cost_report(price_per_gb, tasks_per_month)
        return out

    # -- text ------------------------------------------------------------------

    def render(self) -> str:
        """The human summary for stderr (a few lines)."""
        levels = ", ".join(f"{lv} {self.rows[lv]}" for lv in schema.LEVELS if self.rows.get(lv))
        lines = [
            f"hal-logging-forward: {self.total_rows} rows ({levels or 'none'}) from "
            f"{human_bytes(self.bytes_read)} in {self.elapsed:.1f}s -> {self.sink}",
            f"  delivered {self.delivered}"
            + (f" (already stored: {self.duplicates})" if self.duplicates else "")
            + f", undelivered {self.undelivered}, dead-lettered {self.dead_lettered}, "
            f"estimated billed {self.total_billed / _GB:.6f} GB",
        ]
        for name, stats in self.filters.items():
            shown = {k: v for k, v in stats.items() if v}
            if shown:
                lines.append(
                    f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(shown.items()))
                )
        if self.command_outcome in ("not-found", "cannot-execute"):
            lines.append(
                f"  command could not be started ({self.command_outcome}): status {self.command_status}"
            )
        elif self.command_status is not None:
            lines.append(
                f"  {'container' if self.mode == 'container' else 'command'} exited with status "
                f"{self.command_status} after {self.command_seconds or 0:.1f}s"
            )
        for path, offset in sorted(self.resumed.items()):
            lines.append(f"  resumed {path} from byte {offset} (its checkpoint)")
        lines.extend(f"  {n}" for n in self.notes)
        if self.undelivered or self.dead_lettered:
            lines.extend(f"  kept for a later run: {w}" for w in self.where_kept)
        return "\n".join(lines)

    def cost_report(self, price_per_gb: float, tasks_per_month: int) -> dict[str, Any]:
        ntasks = max(1, len(self.tasks))
        total = self.total_billed

        def money(b: float) -> float:
            return round(b / _GB * price_per_gb, 6)

        return {
            "price_per_gb": price_per_gb,
            "tasks_in_input": ntasks,
            "tasks_per_month": tasks_per_month,
            "billed_bytes": total,
            "cost": money(total),
            "per_task": {"billed_bytes": total / ntasks, "cost": money(total / ntasks)},
            "per_month": {
                "billed_bytes": total / ntasks * tasks_per_month,
                "cost": money(total / ntasks * tasks_per_month),
            },
            "by_level": {
                lv: {
                    "rows": self.rows[lv],
                    "billed_bytes": self.billed[lv],
                    "cost": money(self.billed[lv]),
                }
                for lv in schema.LEVELS
                if self.rows.get(lv)
            },
            "by_logger": {
                lg: {
                    "rows": self.rows_by_logger[lg],
                    "billed_bytes": self.billed_by_logger[lg],
                    "cost": money(self.billed_by_logger[lg]),
                }
                for lg, _ in self.billed_by_logger.most_common()
            },
        }

    def cost_by_plan(
        self, tasks_per_month: int, price_per_gb: float | None = None
    ) -> dict[str, Any]:
        """The month's estimated cost under each table plan (see :mod:`hal_logging.plans`)."""
        from hal_logging import plans

        return plans.cost_by_plan(self.total_billed, len(self.tasks), tasks_per_month, price_per_gb)

    def render_cost_by_plan(self, tasks_per_month: int, price_per_gb: float | None = None) -> str:
        from hal_logging import plans

        return plans.render_cost_by_plan(self.cost_by_plan(tasks_per_month, price_per_gb))

    def render_dry_run(self, price_per_gb: float, tasks_per_month: int, top: int = 15) -> str:
        rep = self.cost_report(price_per_gb, tasks_per_month)
        ntasks = rep["tasks_in_input"]
        total = rep["billed_bytes"]
        lines = [
            f"hal-logging-forward --dry-run: nothing was written or sent. {self.total_rows} rows, "
            f"{human_bytes(total)} billed (estimate), at ${price_per_gb:.2f}/GB:",
            f"  {'':<28}{'rows':>10}{'billed':>12}{'share':>8}{'per task':>12}{'per month':>12}",
        ]

        def line(name: str, rows: int, b: int) -> str:
            share = (b / total * 100) if total else 0.0
            per_task = b / ntasks / _GB * price_per_gb
            return (
                f"  {name[:27]:<28}{rows:>10}{human_bytes(b):>12}{share:>7.1f}%"
                f"{_money(per_task):>12}{_money(per_task * tasks_per_month):>12}"
            )

        lines.append("  by level:")
        for lv in schema.LEVELS:
            if self.rows.get(lv):
                lines.append(line(lv, self.rows[lv], self.billed[lv]))
        lines.append("  by logger:")
        ranked = self.billed_by_logger.most_common()
        for lg, b in ranked[:top]:
            lines.append(line(lg or "(none)", self.rows_by_logger[lg], b))
        if len(ranked) > top:
            rest = ranked[top:]
            lines.append(
                line(
                    f"({len(rest)} more)",
                    sum(self.rows_by_logger[k] for k, _ in rest),
                    sum(b for _, b in rest),
                )
            )
        lines.append(line("total", self.total_rows, total))
        lines.append(
            f"  per task: {_money(rep['per_task']['cost'])} ({ntasks} task(s) in the input); "
            f"per month at {tasks_per_month} tasks: {_money(rep['per_month']['cost'])}"
        )
        lines.append(self.render_cost_by_plan(tasks_per_month, price_per_gb))
        for name, stats in self.filters.items():
            shown = {k: v for k, v in stats.items() if v}
            if shown:
                lines.append(
                    f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(shown.items()))
                )
        return "\n".join(lines)


def human_bytes(n: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 KB``, ``3.2 MB``, ``12.0 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _money(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"
