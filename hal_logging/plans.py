"""Log Analytics table plans: what each changes in the table, and what each costs.

A custom table fed by the Logs Ingestion API can be on one of three plans:

- **Analytics**: full KQL, alerts, queries included in the price; the most
  expensive per GB ingested.
- **Basic**: KQL on one table per query (no ``join``, ``union`` beyond a
  ``lookup`` into Analytics tables, ``find``, ``search``, ``externaldata``,
  user functions, cross-resource queries), queries billed per GB scanned,
  simple log alerts only.
- **Auxiliary**: the cheapest ingestion, slower queries billed per GB scanned,
  no alerts, restore or export; only a *new* table can get it (created with
  the Tables API version ``2023-01-01-preview``) and it cannot have
  ``dynamic`` columns.

The last rule is the only one that changes the table: ``Properties`` is
stored as a string (its JSON text) on Auxiliary. The stream the forwarder
posts to keeps ``Properties`` dynamic, and the rule's transformation turns it
into its text on the way in (:func:`transform_kql`), so neither the
forwarder nor the stream knows which plan the table is on. Queries read it
with ``parse_json(Properties)`` there.

Prices are list prices per GB ingested in East US, read in :data:`PRICES_READ`
(Azure's pricing page and third-party summaries of it). They change: the date
travels with every estimate printed, and ``--price-per-gb`` overrides the
Analytics price. Analytics' first 5 GB per workspace and month are free, and
retention past the included 30 days is billed per GB-month; estimates leave
both out (they depend on the whole workspace, not on one run).

Stdlib only: imported by ``hal-logging schema`` and the forwarder's summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from hal_logging import schema

PLANS: Final[tuple[str, ...]] = ("Analytics", "Basic", "Auxiliary")
DEFAULT_PLAN: Final = "Analytics"

#: When the prices below were read, and where they apply.
PRICES_READ: Final = "2026-12"
PRICE_REGION: Final = "East US"

#: Tables API version for each plan: only the preview version can set Auxiliary.
TABLE_API_VERSION: Final = "2022-10-01"
AUXILIARY_TABLE_API_VERSION: Final = "2023-01-01-preview"

#: Total retention (interactive + long-term), in days: 4 to 730, then whole years only.
TOTAL_RETENTION_YEARS: Final[tuple[int, ...]] = (
    1095, 1460, 1826, 2191, 2556, 2922, 3288, 3653, 4018, 4383,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlanPrice:
    """USD per GB of one plan: ingestion, plus processing where the plan needs a transformation."""

    ingestion_per_gb: float
    processing_per_gb: float = 0.0

    @property
    def per_gb(self) -> float:
        return self.ingestion_per_gb + self.processing_per_gb


#: List prices per GB ingested (East US, read :data:`PRICES_READ`). Auxiliary's
#: transformation (Properties to text) processes every row, so its processing
#: price is paid on all of it.
PRICES: Final[dict[str, PlanPrice]] = {
    "Analytics": PlanPrice(2.30),
    "Basic": PlanPrice(0.50),
    "Auxiliary": PlanPrice(0.05, 0.10),
}

_GB: Final = 1_000_000_000


def normalize_plan(value: str) -> str:
    """``analytics``/``BASIC``/... to the name Azure uses; ValueError names the three."""
    for plan in PLANS:
        if value.strip().lower() == plan.lower():
            return plan
    raise ValueError(f"unknown table plan {value!r}: choose analytics, basic or auxiliary")


def check_total_retention(days: int) -> int:
    """``days`` if Azure accepts it as a table's total retention, else ValueError saying which do."""
    if 4 <= days <= 730 or days in TOTAL_RETENTION_YEARS:
        return days
    years = ", ".join(str(d) for d in TOTAL_RETENTION_YEARS)
    raise ValueError(
        f"total retention {days} days is not one Azure accepts: 4 to 730, or whole years ({years})"
    )


def table_api_version(plan: str) -> str:
    return AUXILIARY_TABLE_API_VERSION if normalize_plan(plan) == "Auxiliary" else TABLE_API_VERSION


def table_columns(plan: str = DEFAULT_PLAN) -> list[dict[str, str]]:
    """The table's columns on ``plan``: on Auxiliary, no ``dynamic`` column (stored as text)."""
    columns = schema.table_columns()
    if normalize_plan(plan) != "Auxiliary":
        return columns
    out = []
    for c in columns:
        if c["type"] == "dynamic":
            c = {
                "name": c["name"],
                "type": "string",
                "description": c["description"]
                + " Stored as JSON text: parse_json("
                + c["name"]
                + ").",
            }
        out.append(c)
    return out


def transform_kql(plan: str, base: str = "source") -> str:
    """The DCR transformation for ``plan``: ``base``, and on Auxiliary each dynamic column as text.

    The stream keeps its dynamic columns (the forwarder sends objects), and a
    transformation's output must have the table's types, so Auxiliary's rule
    converts them with ``tostring``. An operator-given ``base`` (a filter)
    stays first.
    """
    if normalize_plan(plan) != "Auxiliary":
        return base
    dynamic = [c.name for c in schema.COLUMNS if c.type == "dynamic"]
    return base + "".join(f" | extend {name} = tostring({name})" for name in dynamic)


# ---------------------------------------------------------------------------
# Cost per plan
# ---------------------------------------------------------------------------


def monthly_bytes(billed_bytes: float, tasks_in_input: int, tasks_per_month: int) -> float:
    """Billed bytes per month: the input's bytes per task times the tasks a month runs."""
    return billed_bytes / max(1, tasks_in_input) * tasks_per_month


def cost_by_plan(
    billed_bytes: float,
    tasks_in_input: int,
    tasks_per_month: int,
    analytics_price_per_gb: float | None = None,
) -> dict[str, Any]:
    """Estimated monthly cost of this volume under each plan (``--summary-json``'s ``cost_by_plan``).

    One entry per plan, lower-case (``analytics``, ``basic``, ``auxiliary``),
    each with ``price_per_gb`` (ingestion plus processing), its two parts,
    ``monthly_usd``, and ``price_source`` (``list`` or ``--price-per-gb``);
    beside them the month's volume and the prices' date and region.
    """
    month = monthly_bytes(billed_bytes, tasks_in_input, tasks_per_month)
    out: dict[str, Any] = {
        "prices_read": PRICES_READ,
        "region": PRICE_REGION,
        "tasks_in_input": max(1, tasks_in_input),
        "tasks_per_month": tasks_per_month,
        "monthly_billed_bytes": round(month),
        "monthly_billed_gb": month / _GB,
    }
    for plan, price in PRICES.items():
        source = "list"
        if plan == "Analytics" and analytics_price_per_gb is not None:
            if analytics_price_per_gb != price.ingestion_per_gb:
                source = "--price-per-gb"
            price = PlanPrice(analytics_price_per_gb)
        out[plan.lower()] = {
            "price_per_gb": round(price.per_gb, 6),
            "ingestion_per_gb": price.ingestion_per_gb,
            "processing_per_gb": price.processing_per_gb,
            "monthly_usd": round(month / _GB * price.per_gb, 6),
            "price_source": source,
        }
    return out


def render_cost_by_plan(estimate: dict[str, Any], indent: str = "  ") -> str:
    """Two lines for stderr: the month's volume, then the cost under each plan with the date."""
    parts = []
    for plan in PLANS:
        e = estimate[plan.lower()]
        mark = "*" if e["price_source"] != "list" else ""
        parts.append(f"{plan} {_money(e['monthly_usd'])} (${e['price_per_gb']:.2f}/GB{mark})")
    note = (
        " (*: --price-per-gb)"
        if any(estimate[p.lower()]["price_source"] != "list" for p in PLANS)
        else ""
    )
    aux = PRICES["Auxiliary"]
    return (
        f"{indent}per month at {estimate['tasks_per_month']} tasks "
        f"({_volume(estimate['monthly_billed_bytes'])} billed), by table plan: "
        + ", ".join(parts)
        + f"\n{indent}  list prices per GB ingested, {estimate['region']}, read "
        f"{estimate['prices_read']}{note}; Auxiliary = ${aux.ingestion_per_gb:.2f} ingestion "
        f"+ ${aux.processing_per_gb:.2f} processing"
    )


def _volume(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:,.2f} GB"


def _money(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"
