"""Wrap mode's bounded stop, without Docker: --stop-timeout, a second signal, the
process group, and recognising ``docker run`` command lines (no daemon needed)."""

from __future__ import annotations

import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hal_logging.pipeline.sources.docker_run import parse_docker_run

from .forward_helpers import db_rows, reaped, start_forward, write_signal_catcher
from .waiting import wait_for

#: Ignores SIGTERM, starts a grandchild that ignores it too, prints numbered lines.
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open(sys.argv[1], "w").write(str(child.pid))
    i = 0
    while True:
        print(f"line {i}", flush=True)
        i += 1
        time.sleep(0.005)
""")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stubborn_run(tmp_path: Path, args: list[str], signals: int) -> tuple[int, str, int]:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    pidfile = tmp_path / "grandchild.pid"
    proc = start_forward(
        ["--flush-interval", "0.05", *args, "--", sys.executable, str(script), str(pidfile)],
        tmp_path,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    db = tmp_path / "hal-logs.db"
    with reaped(proc):
        wait_for(lambda: len(db_rows(db)) >= 10 and pidfile.exists(), what="the command to run")
        grandchild = int(pidfile.read_text())
        proc.send_signal(signal.SIGTERM)
        if signals > 1:  # signals are not queued: wait until the first one was handled
            wait_for(lambda: any("passed on" in ln for ln in lines), what="the first signal")
            proc.send_signal(signal.SIGTERM)
        wait_for(lambda: proc.poll() is not None, timeout=40, what="the forwarder to exit")
        reader.join(10)
    return proc.returncode, "".join(lines), grandchild


@pytest.mark.parametrize(
    ("args", "signals"),
    [(["--stop-timeout", "1"], 1), (["--stop-timeout", "600"], 2)],
    ids=["after-stop-timeout", "second-signal"],
)
def test_a_command_that_ignores_sigterm_is_killed_with_its_process_group(
    tmp_path: Path, args: list[str], signals: int
) -> None:
    status, err, grandchild = _stubborn_run(tmp_path, args, signals)
    assert status == 128 + signal.SIGKILL, err
    assert "SIGTERM passed on to python" in err
    reason = "a second signal" if signals > 1 else "did not exit within --stop-timeout 1s"
    assert f"stopped for good after {'' if signals > 1 else 'the command '}{reason}" in err
    assert "SIGKILL to python's process group" in err
    wait_for(lambda: not _alive(grandchild), timeout=10, what="the grandchild to be gone")
    rows = db_rows(tmp_path / "hal-logs.db")
    numbers = [int(r["Message"].split()[1]) for r in rows if r["Message"].startswith("line ")]
    assert numbers == list(range(len(numbers))) and numbers  # all delivered, in order
    (final,) = [r for r in rows if r["LoggerName"] == "hal_logging.forward"]
    assert final["Properties"]["exit_status"] == 137 and "killed by SIGKILL" in final["Message"]
    assert (
        f"(stopped for good after {'' if signals > 1 else 'the command '}{reason})"
        in (final["Message"])
    )


def test_stop_timeout_is_a_wrap_mode_flag(tmp_path: Path) -> None:
    from .forward_helpers import run_forward

    res = run_forward(["--stop-timeout", "3", "x.log"], tmp_path)
    assert res.returncode == 2 and "--stop-timeout only applies in wrap mode" in res.stderr
    res = run_forward(["--stop-timeout", "soon", "--", "true"], tmp_path)
    assert res.returncode == 2 and "not a number" in res.stderr


@pytest.mark.parametrize(
    ("argv", "prefix", "run_index", "tty", "cidfile"),
    [
        (["docker", "run", "--rm", "IMG", "python", "-t"], ["docker"], 1, False, None),
        (["docker", "run", "-it", "IMG"], ["docker"], 1, True, None),
        (["/usr/bin/docker", "container", "run", "--tty", "IMG"], ["/usr/bin/docker"], 2, True, None),
        (["docker", "-H", "unix:///d.sock", "run", "-e", "A=-t", "IMG"], ["docker", "-H", "unix:///d.sock"], 3, False, None),
        (["docker", "--context", "c", "run", "--tty=false", "--cidfile=/x/c", "IMG"], ["docker", "--context", "c"], 3, False, "/x/c"),
        (["docker", "run", "--cidfile", "/x/c", "-eN=1", "-dt", "IMG", "--cidfile", "no"], ["docker"], 1, True, "/x/c"),
    ],
)  # fmt: skip
def test_docker_run_command_lines_are_recognised(
    argv: list[str], prefix: list[str], run_index: int, tty: bool, cidfile: str | None
) -> None:
    run = parse_docker_run(argv)
    assert run is not None
    assert (run.prefix, run.run_index, run.tty, run.cidfile) == (prefix, run_index, tty, cidfile)
    with_cid = run.with_cidfile(argv, "/tmp/cid")
    assert with_cid[run_index + 1 : run_index + 3] == ["--cidfile", "/tmp/cid"]
    assert with_cid[: run_index + 1] + with_cid[run_index + 3 :] == argv


@pytest.mark.parametrize(
    "argv",
    [["docker", "ps"], ["docker", "start", "-a", "x"], ["dockerd"], ["podman", "run", "IMG"], []],
)
def test_other_commands_are_not_docker_run(argv: list[str]) -> None:
    assert parse_docker_run(argv) is None


def test_the_command_runs_in_its_own_process_group(tmp_path: Path) -> None:
    script = tmp_path / "pg.py"
    script.write_text("import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())")
    from .forward_helpers import run_forward

    res = run_forward(["--", sys.executable, str(script)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "True True" in [r["Message"] for r in db_rows(tmp_path / "hal-logs.db")]


def test_sighup_is_passed_on_like_sigterm(tmp_path: Path) -> None:
    # The command has its own session, so a closed terminal's SIGHUP reaches only the
    # forwarder: it must pass it on, or the command would outlive its terminal.
    script = write_signal_catcher(tmp_path / "hup.py", signal.SIGHUP, 4)
    proc = start_forward(["--flush-interval", "0.05", "--", sys.executable, str(script)], tmp_path)
    db = tmp_path / "hal-logs.db"
    with reaped(proc):
        wait_for(lambda: "ready" in [r["Message"] for r in db_rows(db)], what="the child")
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "got SIGHUP" in [r["Message"] for r in db_rows(db)]
