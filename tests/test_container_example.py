"""examples/entrypoint.py, run as a container would run it (issue 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .container_helpers import ROOT, clean_env, wire_row

ENV = {"HAL_RUN_ID": "run-ex", "HAL_TASK_ID": "task-ex", "HAL_AGENT_NAME": "demo-agent"}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "entrypoint.py"), *args],
        capture_output=True,
        text=True,
        env=clean_env(**ENV, **env),
        cwd=ROOT,
        timeout=60,
    )


def test_example_succeeds_with_rows_prints_and_a_progress_bar() -> None:
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = [wire_row(ln) for ln in lines if ln.startswith("{")]
    prints = [ln for ln in lines if not ln.startswith("{")]
    assert all(
        (r["RunID"], r["TaskID"], r["AgentName"]) == ("run-ex", "task-ex", "demo-agent")
        for r in rows
    )
    assert rows[0]["Message"].startswith("container started: run run-ex, task task-ex")
    assert rows[-1]["Message"] == "task succeeded"
    # per-step context is bound
    steps = [r["Properties"]["step"] for r in rows if r["Message"] == "model replied"]
    assert steps == [0, 1, 2, 3]
    # a caught chained exception, as data, on one line
    (failed,) = [r for r in rows if r["Level"] == "WARNING"]
    exc = failed["Properties"]["exception"]
    assert exc["type"] == "__main__.ToolError" or exc["type"] == "ToolError"
    assert "direct cause" in exc["stacktrace"] and "FileNotFoundError" in exc["stacktrace"]
    assert failed["Properties"]["step"] == 1
    # prints arrive in place, between the rows of their step
    assert prints[0].startswith("python ") and "[step 3] submit: ok" in prints
    assert lines.index("[step 0] read_file: ok") < next(
        i for i, ln in enumerate(lines) if ln.startswith("{") and wire_row(ln)["Level"] == "WARNING"
    )
    # the progress bar is on stderr only (its \r redraws read as line ends in text mode)
    assert "agent steps" in proc.stderr and "4/4" in proc.stderr
    assert "agent steps" not in proc.stdout


@pytest.mark.parametrize(("args", "env"), [(("--fail",), {}), ((), {"EXAMPLE_FAIL": "1"})])
def test_example_exits_nonzero_on_failure(args: tuple[str, ...], env: dict[str, str]) -> None:
    proc = _run(*args, **env)
    assert proc.returncode == 1
    last = wire_row(proc.stdout.splitlines()[-1])
    assert last["Level"] == "ERROR" and last["Message"].startswith("task failed")


def test_example_console_format() -> None:
    proc = _run(HAL_LOG_FORMAT="console")
    assert proc.returncode == 0, proc.stderr
    assert not any(ln.startswith("{") for ln in proc.stdout.splitlines())
    assert "agent: task succeeded" in proc.stdout
