"""``hal-logging azure-setup``: the packaged setup script, run through against a fake ``az``.

The command runs the real ``setup-logging.sh`` with the real ``hal-logging
schema``; only the Azure CLI is the stand-in of tests/fake_az.py, which
records every request. PATH holds the fake ``az`` and the system's tools but
not this virtualenv's scripts: the command must find its own schema command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hal_logging import schema
from hal_logging.azure import schema_cli

from . import fake_az
from .forward_helpers import clean_env

ROOT = Path(__file__).resolve().parents[1]


def _setup(
    tmp_path: Path, *args: str, with_az: bool = True
) -> tuple[subprocess.CompletedProcess[str], Path]:
    bindir, log = fake_az.install(tmp_path / "az")
    path = (f"{bindir}:" if with_az else "") + "/usr/bin:/bin"
    env = clean_env({"PATH": path, "HOME": str(tmp_path)})
    env.pop("HAL_LOGGING_SCHEMA", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "azure-setup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, log


def _exports(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)='([^']*)'", stdout, re.M))


def test_setup_creates_everything_and_prints_the_variables(tmp_path: Path) -> None:
    proc, log = _setup(tmp_path, "-g", "hal-rg", "-l", "westeurope", "--identity-name", "hal-id")
    assert proc.returncode == 0, proc.stderr
    assert _exports(proc.stdout) == {
        "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT": fake_az.DCE_ENDPOINT,
        "AZURE_MONITOR_DATA_COLLECTION_RULE_ID": fake_az.DCR_IMMUTABLE_ID,
        "AZURE_MONITOR_STREAM_NAME": schema.STREAM_NAME,
        "AZURE_CLIENT_ID": fake_az.CLIENT_ID,
    }
    calls = fake_az.calls(log)
    puts = {c["argv"][c["argv"].index("--url") + 1]: c for c in calls if c["argv"][0] == "rest"}
    sub = f"/subscriptions/{fake_az.SUBSCRIPTION_ID}/resourceGroups/hal-rg"
    table_url = next(u for u in puts if "/tables/BenchmarkRuns_CL" in u)
    table = json.loads(puts[table_url]["body"])
    assert table["properties"]["schema"]["columns"] == schema.table_columns()
    dcr_url = next(u for u in puts if "/dataCollectionRules/hal-logs-dcr" in u)
    assert dcr_url.startswith(f"https://management.azure.com{sub}/providers/Microsoft.Insights/")
    dcr = json.loads(puts[dcr_url]["body"])
    assert dcr["location"] == "westeurope"
    assert dcr["properties"]["streamDeclarations"] == schema.stream_declaration()
    assert dcr["properties"]["dataCollectionEndpointId"].endswith(
        "dataCollectionEndpoints/hal-logs-dce"
    )
    (dest,) = dcr["properties"]["destinations"]["logAnalytics"]
    assert dest["workspaceResourceId"].endswith("/workspaces/hal-logs")
    (role,) = [c["argv"] for c in calls if c["argv"][:3] == ["role", "assignment", "create"]]
    assert role[role.index("--role") + 1] == "Monitoring Metrics Publisher"
    assert (
        role[role.index("--scope") + 1]
        == f"{sub}/providers/Microsoft.Insights/dataCollectionRules/hal-logs-dcr"
    )
    assert role[role.index("--assignee-object-id") + 1] == fake_az.PRINCIPAL_ID


def test_setup_again_changes_nothing_it_already_did(tmp_path: Path) -> None:
    first, log = _setup(tmp_path, "-g", "hal-rg", "--identity-name", "hal-id")
    assert first.returncode == 0, first.stderr
    before = len(fake_az.calls(log))
    again, _ = _setup(tmp_path, "-g", "hal-rg", "--identity-name", "hal-id")
    assert again.returncode == 0, again.stderr
    second = [c["argv"] for c in fake_az.calls(log)[before:]]
    assert "role assignment already present" in again.stderr
    assert not any(a[:3] == ["role", "assignment", "create"] for a in second)
    assert not any(a[:2] == ["identity", "create"] for a in second)
    assert not any(a[:4] == ["monitor", "log-analytics", "workspace", "create"] for a in second)
    assert _exports(again.stdout) == _exports(first.stdout)


def test_dry_run_calls_nothing(tmp_path: Path) -> None:
    proc, log = _setup(tmp_path, "--dry-run", "-g", "hal-rg", "--identity-name", "hal-id")
    assert proc.returncode == 0, proc.stderr
    assert fake_az.calls(log) == []
    assert "+ az role assignment create" in proc.stderr


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    no_az, _ = _setup(tmp_path, "-g", "hal-rg", "--identity-name", "hal-id", with_az=False)
    assert no_az.returncode != 0
    assert no_az.stderr.strip().splitlines() == [
        "setup-logging: the Azure CLI (az) is not installed: https://aka.ms/azure-cli"
    ]
    no_group, log = _setup(tmp_path, "--identity-name", "hal-id")
    assert no_group.returncode != 0 and "-g NAME" in no_group.stderr
    assert fake_az.calls(log) == []
    bad_export, _ = _setup(tmp_path, "--export")
    assert bad_export.returncode == 2
    assert (
        bad_export.stderr.strip()
        == "hal-logging azure-setup: --export takes one folder: --export DIR"
    )


def test_export_writes_what_a_bicep_deployment_needs(tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    proc, log = _setup(tmp_path, "--export", str(target))
    assert proc.returncode == 0, proc.stderr
    assert fake_az.calls(log) == []
    assert (target / "columns.json").read_text() == schema_cli.render(schema_cli.bicep_inputs())
    assert (target / "main.bicep").read_bytes() == (
        ROOT / "infrastructure" / "azure" / "main.bicep"
    ).read_bytes()
    assert (target / "setup-logging.sh").stat().st_mode & 0o111
    assert "main.bicep" in proc.stderr and "az deployment group create" in proc.stderr


def test_help_shows_both_the_command_and_the_script_options(tmp_path: Path) -> None:
    proc, _ = _setup(tmp_path, "--help")
    assert proc.returncode == 0
    assert "hal-logging azure-setup --export DIR" in proc.stdout
    assert "--identity-name" in proc.stdout and "--dry-run" in proc.stdout


def test_emulator_without_its_extra_names_the_extra() -> None:
    """The test CA (trustme) is only in [emulator]: without it, one line says what to install."""
    code = (
        "import sys; sys.modules['trustme'] = None\n"
        "from hal_logging.cli.main import main\n"
        "sys.exit(main(['emulator', '--db', ':memory:']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hal-logging emulator: needs the test-CA library 'trustme', which production installs "
        "leave out: pip install 'hal-logging[emulator]'"
    ]
