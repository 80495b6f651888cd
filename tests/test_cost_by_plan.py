"""The cost estimate under each table plan: ``--dry-run``, the closing summary, ``--summary-json``.

The prices are list prices with the date they were read (hal_logging/plans.py);
the tests check the arithmetic against them and that the date travels with
every figure, and that ``--price-per-gb`` still sets the Analytics price.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hal_logging import plans

from .forward_helpers import run_forward, wire_line

GB = 1_000_000_000


def test_one_gb_a_month_under_each_plan() -> None:
    est = plans.cost_by_plan(2 * GB, tasks_in_input=2, tasks_per_month=1)
    assert est["monthly_billed_bytes"] == GB and est["monthly_billed_gb"] == 1.0
    assert est["prices_read"] == plans.PRICES_READ == "2026-12"
    assert est["analytics"]["monthly_usd"] == pytest.approx(2.30)
    assert est["basic"]["monthly_usd"] == pytest.approx(0.50)
    aux = est["auxiliary"]
    assert (aux["ingestion_per_gb"], aux["processing_per_gb"]) == (0.05, 0.10)
    assert aux["price_per_gb"] == pytest.approx(0.15) and aux["monthly_usd"] == pytest.approx(0.15)
    assert {est[p]["price_source"] for p in ("analytics", "basic", "auxiliary")} == {"list"}
    custom = plans.cost_by_plan(GB, 1, 10, analytics_price_per_gb=2.5)
    assert custom["analytics"]["monthly_usd"] == pytest.approx(25.0)
    assert custom["analytics"]["price_source"] == "--price-per-gb"
    assert custom["basic"]["monthly_usd"] == pytest.approx(5.0)  # the others keep their list price
    text = plans.render_cost_by_plan(custom)
    assert "Analytics $25.00 ($2.50/GB*)" in text and "Basic $5.00" in text
    assert "Auxiliary $1.50" in text and "read 2026-12" in text and "--price-per-gb" in text


def _input(tmp_path: Path) -> Path:
    log = tmp_path / "run.log"
    lines = [wire_line(i, level="INFO") for i in range(200)] + [b"plain %d" % i for i in range(50)]
    log.write_bytes(b"\n".join(lines) + b"\n")
    return log


def _check_against_the_run(d: dict[str, Any], tasks_per_month: int, analytics: float) -> None:
    est = d["cost_by_plan"]
    month = d["estimated_billed_bytes"] * tasks_per_month  # one task in the input
    assert est["tasks_per_month"] == tasks_per_month and est["tasks_in_input"] == 1
    assert est["monthly_billed_bytes"] == month
    for plan, price in (("analytics", analytics), ("basic", 0.50), ("auxiliary", 0.15)):
        assert est[plan]["price_per_gb"] == pytest.approx(price)
        assert est[plan]["monthly_usd"] == pytest.approx(month / GB * price, abs=1e-6)
    assert est["prices_read"] == "2026-12"


def test_dry_run_prints_and_writes_the_cost_under_each_plan(tmp_path: Path) -> None:
    log = _input(tmp_path)
    args = ["--dry-run", "--task-id", "T1", "--tasks-per-month", "5000", "--price-per-gb", "2.5"]
    res = run_forward([*args, "--summary-json", "dry.json", str(log)], tmp_path)
    assert res.returncode == 0, res.stderr
    d = json.loads((tmp_path / "dry.json").read_text())
    assert d["cost"]["price_per_gb"] == 2.5  # --price-per-gb still drives the dry-run table
    assert d["cost"]["per_month"]["cost"] == pytest.approx(
        d["cost_by_plan"]["analytics"]["monthly_usd"], abs=1e-6
    )
    _check_against_the_run(d, 5000, 2.5)
    (line,) = [x for x in res.stderr.splitlines() if "by table plan" in x]
    assert "per month at 5000 tasks" in line and "Analytics $" in line and "Auxiliary $" in line
    assert "read 2026-12" in res.stderr
    assert res.stderr.count("by table plan") == 1  # once, at the end of the dry-run report
    assert res.stderr.rstrip().splitlines()[-1].lstrip().startswith("list prices")


def test_a_real_run_summary_carries_the_cost_under_each_plan(tmp_path: Path) -> None:
    log = _input(tmp_path)
    res = run_forward(["--task-id", "T1", "--summary-json", "s.json", str(log)], tmp_path)
    assert res.returncode == 0, res.stderr
    d = json.loads((tmp_path / "s.json").read_text())
    assert "cost" not in d  # the per-level/per-logger table stays a dry-run figure
    _check_against_the_run(d, 1000, 2.30)
    assert "by table plan" in res.stderr and "read 2026-12" in res.stderr
    quiet = run_forward(
        ["-q", "--task-id", "T2", "--summary-json", "q.json", "--db", "q.db", str(log)], tmp_path
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "by table plan" not in quiet.stderr
    assert "cost_by_plan" in json.loads((tmp_path / "q.json").read_text())
