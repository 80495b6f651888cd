"""`hal-logging schema`, columns.json, setup-logging.sh and main.bicep agree with docs/contract.md §1.

The thirteen columns are written out here on purpose: this is the check that
the schema in code still matches the contract (and the old table, docs/facts.md §4).
No test calls az: setup-logging.sh runs with --dry-run and a fake `az` on PATH
that records any call.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hal_logging import schema
from hal_logging.azure import schema_cli

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infrastructure" / "azure"
SCRIPT = INFRA / "setup-logging.sh"

CONTRACT_COLUMNS = [
    ("TimeGenerated", "datetime"),
    ("Level", "string"),
    ("Message", "string"),
    ("LoggerName", "string"),
    ("RunID", "string"),
    ("TaskID", "string"),
    ("Benchmark", "string"),
    ("AgentName", "string"),
    ("VMName", "string"),
    ("ExecutionMode", "string"),
    ("ExecutedBy", "string"),
    ("LogType", "string"),
    ("Properties", "dynamic"),
]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert schema_cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def pairs(columns: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(c["name"], c["type"]) for c in columns]


def test_table_matches_contract(capsys: pytest.CaptureFixture[str]) -> None:
    body = run_cli(capsys, "--part", "table", "--retention-days", "90")
    props = body["properties"]
    assert props["schema"]["name"] == "BenchmarkRuns_CL"
    assert pairs(props["schema"]["columns"]) == CONTRACT_COLUMNS
    assert all(c["description"] for c in props["schema"]["columns"])
    assert props["retentionInDays"] == 90 and props["plan"] == "Analytics"
    assert pairs(run_cli(capsys, "--part", "columns")) == CONTRACT_COLUMNS


def test_dcr_matches_contract(capsys: pytest.CaptureFixture[str]) -> None:
    dce, ws = "/subscriptions/s/.../dataCollectionEndpoints/d", "/subscriptions/s/.../workspaces/w"
    body = run_cli(
        capsys, "--part", "dcr", "--dce-id", dce, "--workspace-id", ws, "--location", "westeurope"
    )
    assert body["location"] == "westeurope"
    props = body["properties"]
    assert props["dataCollectionEndpointId"] == dce
    assert list(props["streamDeclarations"]) == ["Custom-BenchmarkRuns_CL"]
    assert (
        pairs(props["streamDeclarations"]["Custom-BenchmarkRuns_CL"]["columns"]) == CONTRACT_COLUMNS
    )
    (dest,) = props["destinations"]["logAnalytics"]
    assert dest["workspaceResourceId"] == ws
    (flow,) = props["dataFlows"]
    assert flow == {
        "streams": ["Custom-BenchmarkRuns_CL"],
        "destinations": [dest["name"]],
        "transformKql": "source",
        "outputStream": "Custom-BenchmarkRuns_CL",
    }
    custom = run_cli(capsys, "--part", "dcr", "--transform-kql", "source | where Level != 'DEBUG'")
    assert custom["properties"]["dataFlows"][0]["transformKql"] == "source | where Level != 'DEBUG'"


def test_stream_and_all(capsys: pytest.CaptureFixture[str]) -> None:
    stream = run_cli(capsys, "--part", "stream")
    assert stream == schema.stream_declaration()
    everything = run_cli(capsys)
    assert everything["table"]["name"] == "BenchmarkRuns_CL"
    assert pairs(everything["table"]["properties"]["schema"]["columns"]) == CONTRACT_COLUMNS
    assert everything["stream"] == {"name": "Custom-BenchmarkRuns_CL", "declaration": stream}
    assert everything["dcr"]["properties"]["streamDeclarations"] == stream
    assert everything["dcr"]["properties"]["dataFlows"][0]["transformKql"] == "source"


def test_compact_and_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schema_cli.main(["--part", "stream", "--compact"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == schema.stream_declaration()
    target = tmp_path / "t.json"
    assert schema_cli.main(["--part", "table", "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert (
        pairs(json.loads(target.read_text())["properties"]["schema"]["columns"]) == CONTRACT_COLUMNS
    )


def test_bad_part_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        schema_cli.main(["--part", "nope"])
    assert exc.value.code == 2
    assert "--part" in capsys.readouterr().err


def test_committed_columns_json_is_generated() -> None:
    """infrastructure/azure/columns.json must equal `hal-logging schema --part bicep`."""
    committed = (INFRA / "columns.json").read_text(encoding="utf-8")
    generated = schema_cli.render(schema_cli.bicep_inputs())
    assert committed == generated, (
        "columns.json is stale: run `hal-logging schema --part bicep -o infrastructure/azure/columns.json`"
    )
    data = json.loads(committed)
    assert pairs(data["tableColumns"]) == CONTRACT_COLUMNS
    assert (
        pairs(data["streamDeclarations"]["Custom-BenchmarkRuns_CL"]["columns"]) == CONTRACT_COLUMNS
    )


def test_bicep_takes_columns_from_the_generated_file() -> None:
    bicep = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert "loadJsonContent('columns.json')" in bicep
    code = "\n".join(line.split("//")[0] for line in bicep.splitlines())
    for name, _ in CONTRACT_COLUMNS[1:]:  # no hand-copied column list
        assert not re.search(rf"\b{name}\b", code.replace("schema.tableName", "")), name
    assert "3913510d-42f4-4e42-8a64-420c390055eb" in bicep  # Monitoring Metrics Publisher
    for output in (
        "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT",
        "AZURE_MONITOR_DATA_COLLECTION_RULE_ID",
        "AZURE_MONITOR_STREAM_NAME",
    ):
        assert f"output {output} " in bicep


def test_setup_script_syntax_and_no_column_list() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text(encoding="utf-8")
    for name, _ in CONTRACT_COLUMNS[1:]:
        assert not re.search(rf"\b{name}\b", text), f"column {name} hand-copied into the script"


def _fake_az(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with an `az` that records being called and fails."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "az-calls"
    az = bindir / "az"
    az.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 97\n')
    az.chmod(0o755)
    return bindir, calls


def _run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bindir, _ = _fake_az(tmp_path)
    # The real `hal-logging schema` (the venv's scripts), behind a fake `az`.
    env = {"PATH": f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bodies(stderr: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    for match in re.finditer(r"^--- body (\w+) ---\n", stderr, re.M):
        found[match.group(1)], _ = decoder.raw_decode(stderr, match.end())
    return found


def test_setup_script_dry_run_uses_the_schema(tmp_path: Path) -> None:
    proc = _run_script(
        tmp_path, "--dry-run", "-g", "hal-rg", "-l", "westeurope", "--identity-name", "hal-id"
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "az-calls").exists(), "--dry-run called az"
    bodies = _bodies(proc.stderr)
    assert set(bodies) == {"table", "dce", "dcr"}
    assert pairs(bodies["table"]["properties"]["schema"]["columns"]) == CONTRACT_COLUMNS
    dcr = bodies["dcr"]
    assert dcr["location"] == "westeurope"
    assert dcr["properties"]["streamDeclarations"] == schema.stream_declaration()
    assert "dataCollectionEndpoints/hal-logs-dce" in dcr["properties"]["dataCollectionEndpointId"]
    trace = [line for line in proc.stderr.splitlines() if line.startswith("+ az ")]
    assert any(
        "role assignment create" in line and "Monitoring\\ Metrics\\ Publisher" in line
        for line in trace
    )
    assert any("identity create" in line or "identity show" in line for line in trace)
    exports = dict(re.findall(r"^export (\w+)='([^']*)'", proc.stdout, re.M))
    assert set(exports) == {
        "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT",
        "AZURE_MONITOR_DATA_COLLECTION_RULE_ID",
        "AZURE_MONITOR_STREAM_NAME",
        "AZURE_CLIENT_ID",
    }
    assert exports["AZURE_MONITOR_STREAM_NAME"] == schema.STREAM_NAME


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "resource group"),
        (("-g", "rg"), "identity"),
        (("-g", "rg", "--bogus"), "unknown option"),
    ],
)
def test_setup_script_explains_missing_arguments(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    proc = _run_script(tmp_path, "--dry-run", *args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "az-calls").exists()


def test_setup_script_refuses_without_az(tmp_path: Path) -> None:
    """Not a dry run, and `az` is our failing fake: it stops at the login check, says so."""
    proc = _run_script(tmp_path, "-g", "rg", "--principal-id", "p")
    assert proc.returncode != 0
    assert "az login" in proc.stderr
    assert (tmp_path / "az-calls").read_text().split() == ["account", "show"]


def test_cookbook_sql_runs_on_the_local_workspace() -> None:
    """Every ```sql block of docs/queries.md runs on a workspace built from the schema."""
    import sqlite3

    text = (ROOT / "docs" / "queries.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    assert len(blocks) >= 6
    assert (
        "summarize arg_max(TimeGenerated, *) by RecordId = tostring(Properties.hal.record_id)"
        in text
    )
    assert 'where LoggerName contains "docker"' in text  # the seed's own query
    assert "summarize arg_max(TimeGenerated, *) by tostring(Properties.hal.record_id)" in text
    assert 'LoggerName == "hal_logging.forward"' in text and "Properties.exit_status" in text
    conn = sqlite3.connect(":memory:")
    conn.execute(schema.sqlite_ddl())
    props = [
        {"hal": {"stream": "stdout", "record_id": "a", "offset": 0}},
        {
            "hal": {
                "stream": "stderr",
                "record_id": "b",
                "offset": 10,
                "claimed": {"RunID": "other"},
            },
            "exception": {"type": "ValueError", "message": "bad", "stacktrace": "Traceback..."},
        },
    ]
    for i, p in enumerate(props):
        row = schema.empty_row()
        row.update(
            TimeGenerated=f"2024-01-01T00:00:0{i}.000000Z",
            Level=["INFO", "ERROR"][i],
            Message=f"m{i}",
            LoggerName="docker.stdout",
            RunID="RUN_ID",
            TaskID="TASK_ID",
        )
        row["Properties"] = json.dumps(p)
        cols = ", ".join(f'"{c}"' for c in schema.COLUMN_NAMES)
        conn.execute(
            f'INSERT INTO "BenchmarkRuns_CL" ({cols}) VALUES ({", ".join("?" * 13)})',
            [row[c] for c in schema.COLUMN_NAMES],
        )
    # The forwarder's final row of TASK_ID (wrap mode), and a task that never got one.
    final = {
        "command": "docker",
        "exit_status": 3,
        "duration_seconds": 1.5,
        "hal": {"stream": "unknown", "record_id": "c", "format": "forwarder", "offset": 0},
    }
    for logger, task, props_json in (
        ("hal_logging.forward", "TASK_ID", json.dumps(final)),
        ("docker.stdout", "TASK_UNFINISHED", json.dumps({"hal": {"record_id": "d"}})),
    ):
        conn.execute(
            'INSERT INTO "BenchmarkRuns_CL" ("TimeGenerated", "Level", "Message", "LoggerName", '
            '"RunID", "TaskID", "LogType", "Properties") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            ["2024-01-01T00:00:09.000000Z", "ERROR", "m", logger, "RUN_ID", task, "", props_json],
        )
    results = []
    by_text: dict[str, list[Any]] = {}
    for block in blocks:
        for statement in filter(str.strip, block.split(";")):
            results.append(conn.execute(statement.replace("test-run-id", "RUN_ID")).fetchall())
            by_text[statement.strip()] = results[-1]
    assert all(results), "a cookbook query found nothing in a workspace made for it"
    exit_rows = next(r for q, r in by_text.items() if "AS ExitStatus" in q)
    assert [row[:5] for row in exit_rows] == [("TASK_ID", None, 3, 1.5, "docker")]
    unfinished = next(r for q, r in by_text.items() if q.endswith("IS NOT NULL) = 0"))
    assert [row[0] for row in unfinished] == ["TASK_UNFINISHED"]
