"""``hal-logging report``: written files, one-line errors with their exit statuses, ``--follow``."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hal_logging.cli import main as main_cli
from hal_logging.cli.report import default_output
from hal_logging.pipeline.sinks.sqlite import Workspace
from tests.forward_helpers import clean_env, reaped, run_cli, start_cli
from tests.test_report_data import exit_row, row
from tests.waiting import wait_for


def _report(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("report", *args, cwd=cwd, timeout=120)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "w.db"
    ws = Workspace(str(path))
    ws.insert_rows([row("T1", 0), row("T1", 1, "ERROR", "bad"), exit_row("T1", 2, 1)])
    ws.close()
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_writes_the_page(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = _report("--db", str(db), "--run-id", "R1", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert _one_line(res.stderr).startswith(f"hal-logging report: wrote {out}: 1 tasks, 3 rows")
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "T1" in html
    assert not list(tmp_path.glob("*.tmp-*"))  # the temporary file was renamed


def test_default_output_and_env_db(db: Path, tmp_path: Path) -> None:
    env = clean_env({"HAL_LOGGING_DB": str(db)})
    res = subprocess.run(
        [sys.executable, "-m", "hal_logging.cli.main", "report", "--run-id", "R1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "report-R1.html").exists()
    assert default_output("../a b/<c>") == "report-a_b_c.html"


def test_no_workspace(tmp_path: Path) -> None:
    res = _report("--run-id", "R1", cwd=tmp_path)
    assert res.returncode == 1
    assert _one_line(res.stderr) == (
        "hal-logging report: no workspace at hal-logs.db: ship something first "
        "(hal-logging-forward ...) or pass --db PATH"
    )


def test_not_a_workspace(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    res = _report("--db", str(bad), "--run-id", "R1")
    assert res.returncode == 1
    assert "is not a readable hal-logging workspace" in _one_line(res.stderr)


def test_unknown_run_names_the_recent_ones(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = _report("--db", str(db), "--run-id", "nope", "-o", str(out))
    assert res.returncode == 1
    assert _one_line(res.stderr) == (
        f"hal-logging report: no rows for run 'nope' in {db} (recent runs: R1)"
    )
    assert not out.exists()


def test_unwritable_output(db: Path, tmp_path: Path) -> None:
    res = _report("--db", str(db), "--run-id", "R1", "-o", str(tmp_path / "no" / "r.html"))
    assert res.returncode == 1
    assert "cannot write" in _one_line(res.stderr)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--tail-rows", "-3"), "--tail-rows"),
        (("--max-rows", "x"), "--max-rows"),
        (("--follow", "--interval", "0"), "--interval"),
        ((), "--run-id"),
    ],
)
def test_usage_errors(db: Path, args: tuple[str, ...], needle: str) -> None:
    run = () if not args else ("--run-id", "R1")
    res = _report("--db", str(db), *run, *args)
    assert res.returncode == 2
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_listed_in_help_and_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_cli.main(["--help"]) == 0
    assert "report" in capsys.readouterr().out
    code = (
        "import sys; sys.modules['jinja2'] = None\n"
        "from hal_logging.cli.main import main\n"
        "sys.exit(main(['report', '--run-id', 'R1']))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert _one_line(res.stderr) == (
        "hal-logging: the 'report' command needs 'jinja2': pip install 'hal-logging[report]'"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_follow_rewrites_until_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "w.db"
    Workspace(str(db)).close()
    out = tmp_path / "live.html"
    proc = start_cli(
        "report",
        "--db",
        str(db),
        "--run-id",
        "R1",
        "-o",
        str(out),
        "--follow",
        "--interval",
        "0.2",
    )
    with reaped(proc):
        # The run has no rows yet: the page says it waits, and reloads itself.
        wait_for(
            lambda: out.exists() and "waiting for the first one" in out.read_text(), 30, "page"
        )
        assert 'http-equiv="refresh" content="1"' in out.read_text()
        ws = Workspace(str(db))
        ws.insert_rows([row("T1", 0), row("T1", 1, "ERROR", "live error")])
        wait_for(lambda: "live error" in out.read_text(), 30, "the new rows in the page")
        ws.insert_rows([exit_row("T1", 2, 3)])
        ws.close()
        wait_for(lambda: '<td data-v="3" class="status">3</td>' in out.read_text(), 30, "exit row")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"hal-logging report: stopped following; {out} holds 1 tasks, 3 rows"
    )
    final = out.read_text()
    assert 'http-equiv="refresh"' not in final and "live error" in final
    assert not list(tmp_path.glob("*.tmp-*"))
