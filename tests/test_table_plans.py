"""The three table plans: the Auxiliary table and its transformation, the setup script per plan, Bicep.

No Kusto engine or parser runs here (the maintained parser, Microsoft's
Kusto.Language, is a .NET library; its Python wrapper needs a .NET runtime
these machines do not have), so the Auxiliary rule's transformation is held
to the operators and functions Azure documents for transformations, and its
output's column types to the table's, by tests/kql_check.py. The setup script
runs all the way through against the fake ``az`` of tests/fake_az.py, which
refuses what the Tables API refuses for each plan.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hal_logging import plans, schema
from hal_logging.azure import schema_cli

from . import fake_az
from .forward_helpers import clean_env
from .kql_check import check_transform

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infrastructure" / "azure"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert schema_cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _types(columns: list[dict[str, str]]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in columns}


def test_auxiliary_table_has_no_dynamic_column(capsys: pytest.CaptureFixture[str]) -> None:
    table = _cli(capsys, "--part", "table", "--plan", "auxiliary", "--total-retention-days", "365")
    props = table["properties"]
    assert props["plan"] == "Auxiliary"
    assert props["totalRetentionInDays"] == 365
    assert "retentionInDays" not in props  # fixed by Azure on Auxiliary (read-only)
    columns = props["schema"]["columns"]
    assert [c["name"] for c in columns] == list(schema.COLUMN_NAMES)
    assert "dynamic" not in {c["type"] for c in columns}
    assert _types(columns)["Properties"] == "string"
    assert "parse_json(Properties)" in columns[-1]["description"]
    assert _cli(capsys, "--part", "columns", "--plan", "Auxiliary") == columns


def test_auxiliary_dcr_keeps_the_stream_and_converts_properties(
    capsys: pytest.CaptureFixture[str],
) -> None:
    everything = _cli(capsys, "--plan", "auxiliary")
    dcr = everything["dcr"]["properties"]
    # The stream the forwarder posts to does not change: Properties stays dynamic.
    assert dcr["streamDeclarations"] == schema.stream_declaration()
    assert everything["stream"]["declaration"] == schema.stream_declaration()
    (flow,) = dcr["dataFlows"]
    assert flow["transformKql"] == "source | extend Properties = tostring(Properties)"
    stream = _types(schema.stream_declaration()[schema.STREAM_NAME]["columns"])
    table = _types(everything["table"]["properties"]["schema"]["columns"])
    assert check_transform(flow["transformKql"], stream, table) == []
    # An operator's own filter stays first, the conversion is added after it.
    custom = _cli(
        capsys, "--part", "dcr", "--plan", "auxiliary", "--transform-kql",
        "source | where Level != 'DEBUG'",
    )  # fmt: skip
    kql = custom["properties"]["dataFlows"][0]["transformKql"]
    assert kql == "source | where Level != 'DEBUG' | extend Properties = tostring(Properties)"
    assert check_transform(kql, stream, table) == []


@pytest.mark.parametrize("plan", ["analytics", "basic"])
def test_other_plans_keep_dynamic_properties_and_plain_source(
    capsys: pytest.CaptureFixture[str], plan: str
) -> None:
    everything = _cli(capsys, "--plan", plan)
    table = everything["table"]["properties"]
    assert table["plan"] == plan.capitalize()
    assert _types(table["schema"]["columns"])["Properties"] == "dynamic"
    assert ("retentionInDays" in table) == (plan == "analytics")
    (flow,) = everything["dcr"]["properties"]["dataFlows"]
    assert flow["transformKql"] == "source"
    stream = _types(schema.stream_declaration()[schema.STREAM_NAME]["columns"])
    assert check_transform("source", stream, _types(table["schema"]["columns"])) == []


def test_the_transformation_check_can_fail() -> None:
    """What the check refuses: each of these would be refused by Azure when the rule is saved."""
    stream = _types(schema.stream_declaration()[schema.STREAM_NAME]["columns"])
    aux = _types(plans.table_columns("Auxiliary"))
    # The stream as is, into the Auxiliary table: Properties would be dynamic.
    assert any("'Properties' is dynamic" in p for p in check_transform("source", stream, aux))
    assert check_transform("source | summarize count() by TaskID", stream, aux)
    assert check_transform(
        "source | take 10 | extend Properties = tostring(Properties)", stream, aux
    )
    assert check_transform("source | extend Properties = tojson(Properties)", stream, aux)
    assert check_transform("source | extend Properties = tostring(Propertys)", stream, aux)
    assert check_transform(
        "source | extend Extra = 1 | extend Properties = tostring(Properties)", stream, aux
    )
    assert check_transform(
        "source | project Message, Properties = tostring(Properties)", stream, aux
    )
    assert check_transform(
        "BenchmarkRuns_CL | extend Properties = tostring(Properties)", stream, aux
    )
    assert check_transform("source | extend Properties = tostring(Properties", stream, aux)


def test_plan_and_retention_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        schema_cli.main(["--plan", "archive"])
    assert exc.value.code == 2
    assert "choose analytics, basic or auxiliary" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        schema_cli.main(["--part", "table", "--total-retention-days", "1000"])
    assert exc.value.code == 2
    assert "whole years (1095, 1460" in capsys.readouterr().err
    assert (
        schema_cli.main(
            ["--part", "table", "--retention-days", "90", "--total-retention-days", "60"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "hal-logging schema: total retention (60 days) is shorter than the interactive "
        "retention (90 days)"
    ]
    assert plans.check_total_retention(4383) == 4383
    with pytest.raises(ValueError):
        plans.check_total_retention(3)


# --- the setup script, through `hal-logging azure-setup`, against the fake az ----------


def _setup(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    bindir, log = fake_az.install(tmp_path / "az")
    env = clean_env({"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    env.pop("HAL_LOGGING_SCHEMA", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "azure-setup",
         "-g", "hal-rg", "--identity-name", "hal-id", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc, log


def _dcr_flow(log: Path) -> dict[str, Any]:
    (call,) = [
        c for c in fake_az.calls(log)
        if c["argv"][0] == "rest" and "/dataCollectionRules/" in " ".join(c["argv"])
    ]  # fmt: skip
    body = json.loads(call["body"])
    assert body["properties"]["streamDeclarations"] == schema.stream_declaration()
    (flow,) = body["properties"]["dataFlows"]
    return flow


@pytest.mark.parametrize(
    ("plan", "api_version", "properties_type", "transform"),
    [
        ("analytics", "2022-10-01", "dynamic", "source"),
        ("basic", "2022-10-01", "dynamic", "source"),
        ("auxiliary", "2023-01-01-preview", "string",
         "source | extend Properties = tostring(Properties)"),
    ],
)  # fmt: skip
def test_setup_script_for_each_plan(
    tmp_path: Path, plan: str, api_version: str, properties_type: str, transform: str
) -> None:
    proc, log = _setup(tmp_path, "--plan", plan, "--total-retention-days", "1095")
    assert proc.returncode == 0, proc.stderr
    (table,) = fake_az.table_requests(log)
    assert table["api_version"] == api_version
    assert table["plan"] == plan.capitalize()
    assert table["totalRetentionInDays"] == 1095
    assert table["retentionInDays"] == (30 if plan == "analytics" else None)
    names = [n for n, _ in table["columns"]]
    assert names == list(schema.COLUMN_NAMES)
    assert dict(table["columns"])["Properties"] == properties_type
    assert _dcr_flow(log)["transformKql"] == transform
    assert "AZURE_MONITOR_DATA_COLLECTION_RULE_ID" in proc.stdout


def test_setup_script_default_plan_is_analytics_without_total_retention(tmp_path: Path) -> None:
    proc, log = _setup(tmp_path, "--retention-days", "60")
    assert proc.returncode == 0, proc.stderr
    (table,) = fake_az.table_requests(log)
    assert (table["plan"], table["api_version"]) == ("Analytics", "2022-10-01")
    assert (table["retentionInDays"], table["totalRetentionInDays"]) == (60, None)


def test_setup_script_refuses_bad_plan_and_retention_before_calling_az(tmp_path: Path) -> None:
    bad_plan, log = _setup(tmp_path, "--plan", "cold")
    assert bad_plan.returncode != 0
    assert bad_plan.stderr.strip().splitlines() == [
        "setup-logging: unknown --plan 'cold': choose analytics, basic or auxiliary"
    ]
    assert fake_az.calls(log) == []
    bad_days, log = _setup(tmp_path / "2", "--total-retention-days", "800")
    assert bad_days.returncode != 0
    assert "--total-retention-days 800: Azure takes 4 to 730, or whole years" in bad_days.stderr
    assert fake_az.calls(log) == []


def test_fake_az_refuses_what_the_tables_api_refuses(tmp_path: Path) -> None:
    """The fake holds table PUTs to the plans' rules: a script that broke them would fail."""
    proc, _ = _setup(tmp_path, "--plan", "basic")
    assert proc.returncode == 0, proc.stderr
    # The same table, now asked to become Auxiliary: Azure refuses (only new tables).
    again, _ = _setup(tmp_path, "--plan", "auxiliary")
    assert again.returncode != 0
    assert "cannot change from Basic to Auxiliary" in again.stderr
    bindir, _ = fake_az.install(tmp_path / "direct")
    body = tmp_path / "t.json"
    url = "https://management.azure.com/ws/tables/BenchmarkRuns_CL?api-version=2022-10-01"
    for table, expected in (
        (schema_cli.table_body(plan="Auxiliary"), "needs api-version 2023-01-01-preview"),
        ({"properties": {**schema_cli.table_body()["properties"], "plan": "Auxiliary"}},
         "needs api-version"),
    ):  # fmt: skip
        body.write_text(json.dumps(table))
        res = subprocess.run(
            [str(bindir / "az"), "rest", "--method", "put", "--url", url, "--body", f"@{body}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 1 and expected in res.stderr
    dynamic = {"properties": {**schema_cli.table_body()["properties"], "plan": "Auxiliary"}}
    body.write_text(json.dumps(dynamic))
    res = subprocess.run(
        [str(bindir / "az"), "rest", "--method", "put", "--url",
         url.replace("2022-10-01", "2023-01-01-preview"), "--body", f"@{body}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1 and "do not support dynamic columns" in res.stderr


def test_setup_dry_run_shows_the_auxiliary_bodies(tmp_path: Path) -> None:
    proc, log = _setup(tmp_path, "--dry-run", "--plan", "Auxiliary")
    assert proc.returncode == 0, proc.stderr
    assert fake_az.calls(log) == []
    assert "tables/BenchmarkRuns_CL\\?api-version=2023-01-01-preview" in proc.stderr
    assert "only a new table can have this plan" in proc.stderr
    assert '"plan": "Auxiliary"' in proc.stderr
    assert "tostring(Properties)" in proc.stderr


# --- Bicep ----------------------------------------------------------------------------


def test_bicep_knows_the_three_plans_and_total_retention() -> None:
    bicep = (INFRA / "main.bicep").read_text(encoding="utf-8")
    allowed = re.search(
        r"@allowed\(\[\s*'Analytics'\s*'Basic'\s*'Auxiliary'\s*\]\)\s*param tablePlan", bicep
    )
    assert allowed, "tablePlan must allow Analytics, Basic and Auxiliary"
    assert re.search(r"@maxValue\(4383\)\s*param totalRetentionInDays int", bicep)
    aux = re.search(
        r"resource auxiliaryTable 'Microsoft\.OperationalInsights/workspaces/tables@"
        r"2023-01-01-preview' = if \(isAuxiliary\) \{(.*?)\n\}",
        bicep, re.S,
    )  # fmt: skip
    assert aux, "the Auxiliary table needs the preview api-version"
    assert "columns: schema.auxiliaryTableColumns" in aux.group(1)
    assert "totalRetentionInDays: totalRetention" in aux.group(1)
    assert (
        "resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = if (!isAuxiliary)"
        in bicep
    )
    assert "schema.auxiliaryTransformSuffix" in bicep
    assert "= if (deployWorkbook && !isAuxiliary)" in bicep  # its queries read Properties.key
    data = json.loads((INFRA / "columns.json").read_text(encoding="utf-8"))
    assert "dynamic" not in {c["type"] for c in data["auxiliaryTableColumns"]}
    assert data["auxiliaryTransformSuffix"] == " | extend Properties = tostring(Properties)"
    # What Bicep builds for the Auxiliary flow passes the same check as the script's.
    stream = _types(data["streamDeclarations"][schema.STREAM_NAME]["columns"])
    kql = "source" + data["auxiliaryTransformSuffix"]
    assert check_transform(kql, stream, _types(data["auxiliaryTableColumns"])) == []


# --- the cookbook: which queries work on which plan ---------------------------------------

COOKBOOK = ROOT / "docs" / "queries.md"
PLAN_SECTION = "Which queries work on which plan"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, blanks to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _sections() -> dict[str, tuple[str, list[str]]]:
    text = COOKBOOK.read_text(encoding="utf-8")
    found = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        title = part.splitlines()[0]
        found[_slug(title)] = (title, re.findall(r"```kusto\n(.*?)```", part, re.S))
    return found


def test_the_cookbook_marks_each_section_for_each_plan() -> None:
    from .kql_check import check_kql

    sections = _sections()
    own = _slug(PLAN_SECTION)
    title, _ = sections[own]
    text = COOKBOOK.read_text(encoding="utf-8")
    part = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(
        r"^\| \[[^\]]+\]\(#([\w-]+)\)[^|]* \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", part, re.M
    )
    marked = {anchor for anchor, *_ in rows}
    with_queries = {slug for slug, (_, blocks) in sections.items() if blocks and slug != own}
    assert marked == with_queries, "every cookbook section with KQL is marked for each plan"
    for anchor, analytics, basic, auxiliary in rows:
        _, blocks = sections[anchor]
        assert analytics.strip() == "yes"
        assert all(check_kql(b) == [] for b in blocks), anchor
        basic_ok = all(check_kql(b, basic=True) == [] for b in blocks)
        aux_ok = all(check_kql(b, auxiliary=True) == [] for b in blocks)
        assert basic.strip().startswith("yes") == basic_ok, (anchor, basic)
        assert auxiliary.strip().startswith("yes") == aux_ok, (anchor, auxiliary)
    # The forms given for Auxiliary (and so for Basic) pass Auxiliary's check themselves.
    _, own_blocks = sections[own]
    assert len(own_blocks) >= 6
    for block in own_blocks:
        assert check_kql(block, auxiliary=True) == [], block
    assert sum("parse_json(Properties)" in b for b in own_blocks) >= 5


def test_the_auxiliary_check_can_fail() -> None:
    from .kql_check import check_kql

    assert check_kql(
        'BenchmarkRuns_CL | where tostring(Properties.hal.stream) == "stderr"', auxiliary=True
    )
    assert check_kql("BenchmarkRuns_CL | extend S = Properties['hal']", auxiliary=True)
    assert not check_kql(
        'BenchmarkRuns_CL | extend P = parse_json(Properties) | where tostring(P.hal.stream) == "x"',
        auxiliary=True,
    )
    share = "BenchmarkRuns_CL | summarize B = sum(_BilledSize) | extend T = toscalar(BenchmarkRuns_CL | count)"
    assert check_kql(share, basic=True) and not check_kql(share)


def test_readme_recommends_a_plan_with_the_prices_in_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme.split("### Table plans: which one, and what it costs\n", 1)[1].split("\n## ", 1)[
        0
    ]
    assert f"read {plans.PRICES_READ}" in part
    rows = dict(re.findall(r"^\| \*\*(\w+)\*\*[^|]* \|(?:[^|]*\|){3} ([^|]+) \|$", part, re.M))
    assert set(rows) == set(plans.PLANS)
    for plan, cell in rows.items():
        price = plans.PRICES[plan]
        assert f"${price.ingestion_per_gb:.2f}" in cell, plan
        assert f"${price.per_gb:.2f}" in cell, plan
    for flag in ("--plan", "--total-retention-days", "tablePlan", "totalRetentionInDays"):
        assert flag in part
    script = (INFRA / "setup-logging.sh").read_text(encoding="utf-8")
    assert "--plan) PLAN=" in script and "--total-retention-days) TOTAL_RETENTION_DAYS=" in script
