"""``hal-logging schema``: the Azure definitions, printed from the one schema in code.

The old system kept the column list three times (setup script, DCR, formatter)
and they drifted. Here ``setup-logging.sh`` and ``main.bicep`` read this
command's output (``infrastructure/azure/columns.json`` is its ``--part bicep``
output, checked by a test), so a column added to :mod:`hal_logging.schema`
reaches Azure without anyone copying it.

Parts (``--part``):

- ``all`` (default): everything below in one object;
- ``table``: the body of a Log Analytics Tables API ``PUT`` (``az rest --body``);
  ``--plan auxiliary`` gives the Auxiliary table (Properties as text) and a DCR
  whose transformation converts Properties to text (see :mod:`hal_logging.plans`);
- ``columns``: just the table's column list;
- ``stream``: the DCR ``streamDeclarations`` entry;
- ``dcr``: the body of a Data Collection Rule ``PUT`` (location, DCE and
  workspace ids from the options, else ``${...}`` placeholders);
- ``bicep``: what ``main.bicep`` loads with ``loadJsonContent``;
- ``workbook``: the Azure Monitor workbook over the table (``workbook.json``,
  see :mod:`hal_logging.report.workbook`); ``workbook-kql``: its queries as the
  cookbook section of ``docs/queries.md``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from hal_logging import _json, plans, schema

PARTS: Final = ("all", "table", "columns", "stream", "dcr", "bicep", "workbook", "workbook-kql")
#: Retention of the table in days; Analytics plan default.
DEFAULT_RETENTION_DAYS: Final = 30
DESTINATION_NAME: Final = "logAnalyticsWorkspace"


def table_body(
    retention_days: int = DEFAULT_RETENTION_DAYS,
    plan: str = "Analytics",
    total_retention_days: int | None = None,
) -> dict[str, Any]:
    """``PUT .../workspaces/{ws}/tables/BenchmarkRuns_CL`` body.

    api-version :func:`hal_logging.plans.table_api_version` (the preview one
    for Auxiliary). The interactive ``retentionInDays`` is the Analytics
    plan's only: Basic and Auxiliary tables fix it (30 days) and take just
    the total retention. On Auxiliary, Properties is a string column.
    """
    plan = plans.normalize_plan(plan)
    props: dict[str, Any] = {"plan": plan}
    if plan == "Analytics":
        props["retentionInDays"] = retention_days
    if total_retention_days is not None:
        props["totalRetentionInDays"] = plans.check_total_retention(total_retention_days)
        if plan == "Analytics" and total_retention_days < retention_days:
            raise ValueError(
                f"total retention ({total_retention_days} days) is shorter than the "
                f"interactive retention ({retention_days} days)"
            )
    props["schema"] = {"name": schema.TABLE_NAME, "columns": plans.table_columns(plan)}
    return {"properties": props}


def dcr_body(
    *,
    location: str = "${LOCATION}",
    dce_id: str = "${DCE_RESOURCE_ID}",
    workspace_id: str = "${WORKSPACE_RESOURCE_ID}",
    transform_kql: str = "source",
) -> dict[str, Any]:
    """``PUT .../dataCollectionRules/{name}`` body (api-version 2022-06-01)."""
    return {
        "location": location,
        "properties": schema.dcr_properties(
            dce_resource_id=dce_id,
            workspace_resource_id=workspace_id,
            destination=DESTINATION_NAME,
            transform_kql=transform_kql,
        ),
    }


def bicep_inputs(transform_kql: str = "source") -> dict[str, Any]:
    """Everything ``main.bicep`` needs that comes from the schema, nothing it knows itself."""
    dcr = schema.dcr_properties(destination=DESTINATION_NAME, transform_kql=transform_kql)
    return {
        "_generated_by": "hal-logging schema --part bicep  (do not edit; a test compares it)",
        "tableName": schema.TABLE_NAME,
        "streamName": schema.STREAM_NAME,
        "destinationName": DESTINATION_NAME,
        "tableColumns": schema.table_columns(),
        # The Auxiliary plan's table (no dynamic column) and what its rule's
        # transformation appends to turn the stream's dynamic Properties into text.
        "auxiliaryTableColumns": plans.table_columns("Auxiliary"),
        "auxiliaryTransformSuffix": plans.transform_kql("Auxiliary", ""),
        "streamDeclarations": dcr["streamDeclarations"],
        "dataFlows": dcr["dataFlows"],
    }


def build(part: str, args: argparse.Namespace) -> Any:
    dcr = dcr_body(
        location=args.location,
        dce_id=args.dce_id,
        workspace_id=args.workspace_id,
        transform_kql=plans.transform_kql(args.plan, args.transform_kql),
    )
    table = table_body(args.retention_days, args.plan, args.total_retention_days)
    if part == "table":
        return table
    if part == "columns":
        return plans.table_columns(args.plan)
    if part == "stream":
        return schema.stream_declaration()
    if part == "dcr":
        return dcr
    if part == "bicep":
        return bicep_inputs(args.transform_kql)
    if part == "workbook":
        from hal_logging.report.workbook import workbook

        return workbook()
    return {
        "table": {"name": schema.TABLE_NAME, **table},
        "stream": {"name": schema.STREAM_NAME, "declaration": schema.stream_declaration()},
        "dcr": dcr,
    }


def _plan(value: str) -> str:
    try:
        return plans.normalize_plan(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _total_retention(value: str) -> int:
    try:
        return plans.check_total_retention(int(value))
    except ValueError as exc:
        msg = (
            str(exc) if value.strip().lstrip("-").isdigit() else f"not a number of days: {value!r}"
        )
        raise argparse.ArgumentTypeError(msg) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hal-logging schema",
        description="Print the Log Analytics table and Data Collection Rule for BenchmarkRuns_CL "
        "as JSON, generated from hal_logging.schema.",
    )
    p.add_argument(
        "--part", choices=PARTS, default="all", help="print only this part (default: all)"
    )
    p.add_argument(
        "--dce-id", default="${DCE_RESOURCE_ID}", help="Data Collection Endpoint resource id"
    )
    p.add_argument(
        "--workspace-id",
        default="${WORKSPACE_RESOURCE_ID}",
        help="Log Analytics workspace resource id",
    )
    p.add_argument("--location", default="${LOCATION}", help="Azure region of the DCR")
    p.add_argument("--transform-kql", default="source", help="DCR transformKql (default: source)")
    p.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS)
    p.add_argument(
        "--plan",
        type=_plan,
        default="Analytics",
        metavar="{analytics,basic,auxiliary}",
        help="table plan (default analytics); auxiliary stores Properties as text and its DCR "
        "transformation converts it",
    )
    p.add_argument(
        "--total-retention-days",
        type=_total_retention,
        metavar="N",
        help="total retention of the table (4-730, or whole years up to 4383)",
    )
    p.add_argument("--compact", action="store_true", help="one line instead of indented JSON")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    return p


def render(value: Any, compact: bool = False) -> str:
    import json  # stdlib for stable indented output; orjson's indent is fixed at 2 too

    if compact:
        return _json.dumps_str(value) + "\n"
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.part == "workbook-kql":
        from hal_logging.report.kql import cookbook_markdown

        text = cookbook_markdown()
    else:
        try:
            text = render(build(args.part, args), args.compact)
        except ValueError as exc:
            print(f"hal-logging schema: {exc}", file=sys.stderr)
            return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
