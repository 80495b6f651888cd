"""The README's adoption guide, run step by step as far as a machine without Azure allows.

- Step 1: the wheel is built (``pip wheel --no-deps``, here with the installed
  hatchling and no index, so it needs no network) and installed into a fresh
  virtualenv. The wheel alone is installed from a file; its dependencies come
  from this test's virtualenv through a ``.pth`` line placed after the fresh
  one's own site-packages (offline, and under two seconds), and the test checks
  that ``hal_logging`` itself is imported from the fresh install.
- Step 2: the installed ``hal-logging azure-setup`` runs against the fake ``az``
  of tests/fake_az.py.
- Steps 6-8: the README's own bash blocks (read from README.md, so the guide
  cannot drift from what is tested) start two tasks' forwarders side by side
  around a wrapped command, wait for their summaries and read them, against the
  Azure stand-in; then a task whose delivery is refused (403) is recovered with
  the README's ``--resend`` step. Only the README's placeholders change: the
  settings file, the tasks folder, and ``docker run ...`` becomes ``python3 -c``.

Steps 3-5 (attaching the identity, roles, removing the agent extension) act on
Azure itself and are not run here.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hal_logging import schema
from hal_logging.azure import schema_cli
from hal_logging.emulator import Emulator

from . import fake_az
from .azure_helpers import started_emulator
from .forward_helpers import clean_env

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PIP = (sys.executable, "-m", "pip")
SETUP = [
    "hal-logging",
    "azure-setup",
    "-g",
    "hal-rg",
    "-l",
    "eastus",
    "--identity-name",
    "hal-logs-identity",
]
#: The README's placeholder for the container a task runs.
DOCKER_RUN = 'docker run --rm --name "hal-$TASK_ID" $env_flags "$IMAGE"'
#: What the tests run instead: a few lines on both streams, a wire line, and its own status.
TASK_CODE = (
    "import json, sys\n"
    "print(f'task {sys.argv[1]} starting', flush=True)\n"
    "print(json.dumps({'_hal': 1, 'Level': 'WARNING', 'Message': 'from the agent',"
    " 'LoggerName': 'agent', 'Properties': {'step': 1}}, separators=(',', ':')), flush=True)\n"
    "print('a warning on stderr', file=sys.stderr, flush=True)\n"
    "sys.exit(3)\n"
)


def readme_block(first_line: str) -> str:
    """The README code block whose first line starts with ``first_line``."""
    blocks = re.findall(r"```(?:bash|yaml|python)\n(.*?)```", README.read_text("utf-8"), re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"README.md has no single block starting with {first_line!r}"
    return found[0]


# -- step 1: build the wheel, install it into a fresh virtualenv ---------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("hal_logging-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def fresh(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel installed (its ``bin`` folder)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies (orjson, the Azure SDK...) from this virtualenv, after the fresh
    # one's own folder: the wheel's hal_logging is found first.
    (Path(site) / "zz_dependencies_from_the_test_venv.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    return venv / "bin"


def _env(
    fresh: Path, extra: dict[str, str] | None = None, fake_az_bin: Path | None = None
) -> dict[str, str]:
    path = [str(fresh), *([str(fake_az_bin)] if fake_az_bin else []), "/usr/bin", "/bin"]
    env = clean_env({"PATH": ":".join(path), **(extra or {})})
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def test_the_wheel_carries_the_infrastructure_and_keeps_the_test_ca_out(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        infra = "hal_logging/infrastructure/azure/"
        for name in ("setup-logging.sh", "main.bicep", "columns.json"):
            assert infra + name in names, name
        assert zf.read(infra + "columns.json").decode() == schema_cli.render(
            schema_cli.bicep_inputs()
        )
        assert (
            zf.read(infra + "main.bicep") == (ROOT / "infrastructure/azure/main.bicep").read_bytes()
        )
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "hal-logging = hal_logging.cli.main:main" in entry_points
    assert "hal-logging-forward = hal_logging.cli.forward:main" in entry_points
    requires = re.findall(r"^Requires-Dist: (.*)$", meta, re.M)
    trustme = [r for r in requires if r.startswith("trustme")]
    assert any("extra == 'emulator'" in r for r in trustme), trustme
    assert not any("extra == 'azure'" in r for r in trustme), trustme  # not on production VMs
    assert any("azure-monitor-ingestion" in r and "extra == 'azure'" in r for r in requires)
    assert {"azure", "emulator", "otel", "dev"} <= set(
        re.findall(r"^Provides-Extra: (.*)$", meta, re.M)
    )


def test_installed_from_the_wheel_alone(fresh: Path) -> None:
    proc = subprocess.run(
        [str(fresh / "python"), "-c", "import hal_logging; print(hal_logging.__file__)"],
        capture_output=True,
        text=True,
        env=_env(fresh),
        cwd=fresh,  # not this checkout: `python -c` puts the current folder first
        check=True,
    )
    assert proc.stdout.startswith(str(fresh.parent)), proc.stdout  # not this checkout
    where = subprocess.run(
        ["hal-logging", "azure-setup", "--where"],
        capture_output=True,
        text=True,
        env=_env(fresh),
        cwd=fresh,  # not this checkout: `python -c` puts the current folder first
        check=True,
    ).stdout.strip()
    assert where.startswith(str(fresh.parent)) and where.endswith(
        "hal_logging/infrastructure/azure"
    )


# -- step 2: the infrastructure subcommand, against a fake az -------------------------------


def test_step2_azure_setup_from_the_installed_wheel(fresh: Path, tmp_path: Path) -> None:
    bindir, log = fake_az.install(tmp_path / "az")
    env = _env(fresh, {"HOME": str(tmp_path)}, fake_az_bin=bindir)

    def setup(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SETUP, *extra],
            capture_output=True,
            text=True,
            env=env,
            cwd=fresh,
            timeout=120,
            check=False,
        )

    dry = setup("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert fake_az.calls(log) == []
    real = setup()
    assert real.returncode == 0, real.stderr
    exports = dict(re.findall(r"^export (\w+)='([^']*)'", real.stdout, re.M))
    assert exports == {
        "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT": fake_az.DCE_ENDPOINT,
        "AZURE_MONITOR_DATA_COLLECTION_RULE_ID": fake_az.DCR_IMMUTABLE_ID,
        "AZURE_MONITOR_STREAM_NAME": schema.STREAM_NAME,
        "AZURE_CLIENT_ID": fake_az.CLIENT_ID,
    }
    table = next(c for c in fake_az.calls(log) if "/tables/BenchmarkRuns_CL" in " ".join(c["argv"]))
    assert json.loads(table["body"])["properties"]["schema"]["columns"] == schema.table_columns()
    deploy = tmp_path / "deploy"
    exported = subprocess.run(
        ["hal-logging", "azure-setup", "--export", str(deploy)],
        capture_output=True,
        text=True,
        env=env,
        cwd=fresh,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    assert {p.name for p in deploy.iterdir()} >= {"main.bicep", "columns.json", "setup-logging.sh"}


# -- steps 6-8: the orchestrator's recipe, against the stand-in -----------------------------


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[Emulator]:
    with started_emulator(tmp_path) as emu:
        yield emu


def _settings_file(tmp_path: Path, emu: Emulator) -> Path:
    """What cloud-init writes to /etc/hal-logging.env, here pointing at the stand-in."""
    path = tmp_path / "hal-logging.env"
    path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in emu.env().items()))
    return path


def _recipe(block: str, tmp_path: Path, settings: Path) -> str:
    return (
        block.replace("/etc/hal-logging.env", str(settings))
        .replace("/home/agent/tasks", str(tmp_path / "tasks"))
        .replace(DOCKER_RUN, 'python3 -c "$TASK_CODE" "$TASK_ID"')
    )


def _bash(
    script: str, fresh: Path, task: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = _env(
        fresh,
        {
            "TASK_ID": task,
            "RUN_ID": "R-adopt",
            "BENCH": "corebench",
            "AGENT": "example-agent",
            "IMAGE": "unused",
            "env_flags": "",
            "TASK_CODE": TASK_CODE,
        },
    )
    for key in ("AZURE_MONITOR_DATA_COLLECTION_ENDPOINT", "AZURE_MONITOR_DATA_COLLECTION_RULE_ID"):
        env.pop(key, None)  # only the settings file the recipe sources may provide them
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=fresh,
        timeout=timeout,
        check=False,
    )


def _query(fresh: Path, emu: Emulator, *args: str) -> list[dict]:
    proc = subprocess.run(
        ["hal-logging", "query", "--db", str(emu.config.db), "--json", "--limit", "0", *args],
        capture_output=True,
        text=True,
        env=_env(fresh),
        cwd=fresh,  # not this checkout: `python -c` puts the current folder first
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_step6_7_two_tasks_side_by_side(fresh: Path, tmp_path: Path, stand_in: Emulator) -> None:
    start = readme_block("# step 6: start a task")
    wait = readme_block("# step 7: wait for the summary and read it")
    assert DOCKER_RUN in start and "--summary-json" in start
    settings = _settings_file(tmp_path, stand_in)
    for task in ("T1", "T2"):  # both started before either is waited for
        started = _bash(_recipe(start, tmp_path, settings), fresh, task)
        assert started.returncode == 0, started.stderr
    for task in ("T1", "T2"):
        read = _bash(_recipe(wait, tmp_path, settings), fresh, task)
        assert read.returncode == 0, (
            read.stdout + read.stderr + (tmp_path / "tasks" / task / "forward.log").read_text()
        )
        assert "command exit status: 3" in read.stdout
        assert "undelivered: 0 dead-lettered: 0" in read.stdout
        summary = json.loads((tmp_path / "tasks" / task / "summary.json").read_text())
        # Names as the forwarder writes them today; a branch reworking the exit statuses
        # may add a delivery field beside them (the README lists these).
        assert summary["command_exit_status"] == 3 and summary["undelivered"] == 0
        raw = (tmp_path / "tasks" / task / "docker_output.log").read_bytes()
        assert f"task {task} starting".encode() in raw and raw.count(b"starting") == 1
        rows = _query(fresh, stand_in, "--dedupe", "--task-id", task)
        assert {r["RunID"] for r in rows} == {"R-adopt"}
        assert "from the agent" in [r["Message"] for r in rows]
        (final,) = [r for r in rows if r["LoggerName"] == "hal_logging.forward"]
        assert final["Properties"]["exit_status"] == 3 and final["LogType"] == "VMOperation"


def test_step8_undelivered_rows_are_recovered(
    fresh: Path, tmp_path: Path, stand_in: Emulator
) -> None:
    settings = _settings_file(tmp_path, stand_in)
    stand_in.set_faults(down="403")  # the role is not there yet
    started = _bash(
        _recipe(readme_block("# step 6: start a task"), tmp_path, settings), fresh, "T3"
    )
    assert started.returncode == 0, started.stderr
    read = _bash(
        _recipe(readme_block("# step 7: wait for the summary and read it"), tmp_path, settings),
        fresh,
        "T3",
    )
    assert read.returncode == 75, read.stdout + read.stderr
    assert "kept:" in read.stdout and "hal-forward-undelivered-" in read.stdout
    assert _query(fresh, stand_in, "--task-id", "T3") == []
    stand_in.set_faults(down=None)  # the role arrived
    recover = _bash(
        _recipe(readme_block("# step 8: recover undelivered rows"), tmp_path, settings), fresh, "T3"
    )
    assert recover.returncode == 0, recover.stderr
    rows = _query(fresh, stand_in, "--dedupe", "--task-id", "T3")
    assert "from the agent" in [r["Message"] for r in rows]
    assert [
        r["Properties"]["exit_status"] for r in rows if r["LoggerName"] == "hal_logging.forward"
    ] == [3]
    resend = json.loads((tmp_path / "tasks" / "T3" / "resend-summary.json").read_text())
    assert resend["undelivered"] == 0 and resend["exit_status"] == 0


def test_steps_1_and_3_snippets_are_well_formed() -> None:
    """The Python snippet (step 3) compiles; the install lines agree across the README."""
    import ast

    snippet = readme_block("from azure.identity import DefaultAzureCredential")
    tree = ast.parse(snippet)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {
        "VirtualMachineIdentity",
        "UserAssignedIdentitiesValue",
        "VirtualMachineUpdate",
    } <= names
    assert "user_assigned_identities=" in snippet and "begin_update" in snippet
    text = README.read_text("utf-8")
    assert "pip install 'hal-logging[azure]'\n" not in text  # not on the public index
    git_lines = set(re.findall(r"pip install '(hal-logging\[azure\] @ git\+[^']+)'", text))
    assert len(git_lines) == 1, git_lines  # cloud-init and the shell line name the same thing
    cloud_init = readme_block("#cloud-config")
    assert "AZURE_CLIENT_ID=" in cloud_init and "/etc/hal-logging.env" in cloud_init
