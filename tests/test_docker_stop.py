"""Stopping wrap mode around a real ``docker run``: bounded, nothing left behind.

A Python process that is PID 1 in a container ignores SIGTERM (no handler: the
kernel does not apply default actions to PID 1 of a namespace). The forwarder
passes SIGTERM on, waits ``--stop-timeout``, then stops the container through
the daemon; the lines printed before the signal are all delivered, in order.
``docker run --init`` puts an init in front that forwards the signal, so the
program ends on its own. Containers killed by ``docker kill`` or by the OOM
killer leave a final row with their status (137).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .forward_helpers import db_rows, reaped, start_forward
from .waiting import wait_for

#: Prints numbered lines until killed; no SIGTERM handler (ignored as PID 1).
COUNTER = "import time\ni = 0\nwhile True:\n    print(f'line {i}', flush=True)\n    i += 1\n    time.sleep(0.005)\n"
STOP_TIMEOUT = 2.0
DRAIN_TIMEOUT = 5.0
#: Generous bound on the forwarder's exit after the signal: stop + drain + the
#: docker CLI calls of the escalation on a loaded machine. Not a benchmark.
EXIT_BOUND = STOP_TIMEOUT + DRAIN_TIMEOUT + 40


def _label() -> tuple[str, list[str]]:
    """A label of this test's own (other suites share the daemon and its test label)."""
    value = uuid.uuid4().hex[:12]
    return value, ["--label", f"hal-logging-stop={value}"]


def _containers(value: str, *, running_only: bool) -> list[str]:
    argv = ["docker", "ps", "-q", "--filter", f"label=hal-logging-stop={value}"]
    if not running_only:
        argv.insert(2, "-a")
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


@contextlib.contextmanager
def _cleaned_up(proc: subprocess.Popen[str], value: str) -> Iterator[None]:
    """Runs the block; then reaps the forwarder and removes this test's containers."""
    try:
        with reaped(proc):
            yield
    finally:
        subprocess.run(
            ["docker", "rm", "-f", *_containers(value, running_only=False)], capture_output=True
        )


def _numbered(db: Path) -> list[int]:
    """The counter's lines in the workspace, in stream order (by source offset)."""
    rows = [r for r in db_rows(db) if r["Message"].startswith("line ")]
    rows.sort(key=lambda r: r["Properties"]["hal"]["offset"])
    return [int(r["Message"].split()[1]) for r in rows]


def _final(db: Path) -> dict[str, Any]:
    (row,) = [r for r in db_rows(db) if r["LoggerName"] == "hal_logging.forward"]
    return row


def _stop_run(
    docker_kit: Any,
    tmp_path: Path,
    *,
    init: bool,
    signals: int = 1,
    stop_timeout: float = STOP_TIMEOUT,
) -> tuple[subprocess.Popen[str], str, int, str]:
    value, label = _label()
    argv = docker_kit.python_argv("-c", COUNTER, rm=True, init=init, extra=label)
    proc = start_forward(
        [
            "--flush-interval",
            "0.05",
            "--stop-timeout",
            str(stop_timeout),
            "--drain-timeout",
            str(DRAIN_TIMEOUT),
            "--run-id",
            "R-stop",
            "--",
            *argv,
        ],
        tmp_path,
    )
    db = tmp_path / "hal-logs.db"
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    with _cleaned_up(proc, value):
        wait_for(lambda: len(_numbered(db)) >= 20, timeout=60, what="the container's first lines")
        assert _containers(value, running_only=True), "the container should be running"
        seen = max(_numbered(db))
        proc.send_signal(signal.SIGTERM)
        if signals > 1:  # signals are not queued: wait until the first one was handled
            wait_for(lambda: any("passed on" in ln for ln in lines), what="the first signal")
            proc.send_signal(signal.SIGTERM)
        wait_for(lambda: proc.poll() is not None, timeout=EXIT_BOUND, what="the forwarder to exit")
        reader.join(10)
        err = "".join(lines)
    return proc, value, seen, err


def _assert_all_delivered_in_order(db: Path, seen: int) -> None:
    got = _numbered(db)
    assert got == list(range(len(got))), "a line is missing or out of order"
    assert len(got) > seen, "lines printed before the signal are missing"
    rowids = [int(r["Message"].split()[1]) for r in db_rows(db) if r["Message"].startswith("line ")]
    assert rowids == got  # stored in the order printed, too


def _assert_stopped_and_delivered(tmp: Path, value: str, seen: int) -> Path:
    """No container of the run left running, every line delivered in order; the workspace."""
    assert not _containers(value, running_only=True), "a container was left running"
    db = tmp / "hal-logs.db"
    _assert_all_delivered_in_order(db, seen)
    return db


def test_sigterm_to_a_pid1_that_ignores_it_is_escalated_through_the_daemon(
    docker_kit: Any, tmp_path: Path
) -> None:
    proc, value, seen, err = _stop_run(docker_kit, tmp_path, init=False)
    db = _assert_stopped_and_delivered(tmp_path, value, seen)
    final = _final(db)
    assert final["Properties"]["exit_status"] == 137 and final["Level"] == "ERROR"
    assert re.fullmatch(r"[0-9a-f]{64}", final["Properties"]["container_id"])
    assert "oom_killed" not in final["Properties"]  # --rm: the daemon no longer knows it
    assert proc.returncode == 137, err
    assert "did not exit within --stop-timeout 2s" in err and "stopped through the daemon" in err
    assert "Traceback" not in err


def test_with_init_the_signal_reaches_the_program_and_no_escalation_is_needed(
    docker_kit: Any, tmp_path: Path
) -> None:
    proc, value, seen, err = _stop_run(docker_kit, tmp_path, init=True)
    db = _assert_stopped_and_delivered(tmp_path, value, seen)
    assert _final(db)["Properties"]["exit_status"] == 143  # 128 + SIGTERM, reported by the init
    assert proc.returncode == 143, err
    assert "stopped for good after" not in err


def test_a_second_sigterm_escalates_at_once(docker_kit: Any, tmp_path: Path) -> None:
    # --stop-timeout 600: only the second signal can end this before the bound.
    proc, value, seen, err = _stop_run(
        docker_kit, tmp_path, init=False, signals=2, stop_timeout=600
    )
    _assert_stopped_and_delivered(tmp_path, value, seen)
    assert proc.returncode == 137, err
    assert "stopped through the daemon" in err


def test_docker_kill_leaves_a_final_row_with_status_137(docker_kit: Any, tmp_path: Path) -> None:
    value, label = _label()
    name = f"hal-kill-{value}"
    argv = docker_kit.python_argv("-c", COUNTER, name=name, extra=label)
    proc = start_forward(["--flush-interval", "0.05", "--", *argv], tmp_path)
    db = tmp_path / "hal-logs.db"
    with _cleaned_up(proc, value):
        wait_for(lambda: len(_numbered(db)) >= 5, timeout=60, what="the container's first lines")
        subprocess.run(["docker", "kill", name], capture_output=True, check=True)
        wait_for(lambda: proc.poll() is not None, timeout=60, what="the forwarder to exit")
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 137, err
    final = _final(db)
    assert final["Properties"]["exit_status"] == 137 and final["Level"] == "ERROR"
    assert final["Properties"]["oom_killed"] is False  # inspected: killed, not out of memory
    got = _numbered(db)
    assert got == list(range(len(got))) and len(got) >= 5


def test_an_oom_killed_container_leaves_status_137_and_the_flag(
    docker_kit: Any, tmp_path: Path
) -> None:
    value, label = _label()
    name = f"hal-oom-{value}"
    program = (
        "import sys\nprint('allocating', flush=True)\nx = []\n"
        "while True:\n    x.append(bytearray(1 << 20))\n"
    )
    argv = docker_kit.python_argv(
        "-c", program, name=name, extra=[*label, "--memory", "32m", "--memory-swap", "32m"]
    )
    proc = start_forward(["--", *argv], tmp_path)
    with _cleaned_up(proc, value):
        _, err = proc.communicate(timeout=120)
        state = docker_kit.inspect(name, "{{.State.OOMKilled}}")
    if state != "true":
        pytest.skip("this daemon did not OOM-kill a 32 MB container (cgroup memory limits off?)")
    assert proc.returncode == 137, err
    final = _final(tmp_path / "hal-logs.db")
    assert final["Properties"]["exit_status"] == 137 and final["Properties"]["oom_killed"] is True
    assert "OOM killer" in final["Message"]
    assert "allocating" in [r["Message"] for r in db_rows(tmp_path / "hal-logs.db")]


def test_the_user_s_own_cidfile_is_read_and_kept(docker_kit: Any, tmp_path: Path) -> None:
    value, label = _label()
    cidfile = tmp_path / "mine.cid"
    argv = docker_kit.python_argv("-c", COUNTER, rm=True, extra=[*label, "--cidfile", str(cidfile)])
    proc = start_forward(
        ["--flush-interval", "0.05", "--stop-timeout", "1", "--drain-timeout", "5", "--", *argv],
        tmp_path,
    )
    db = tmp_path / "hal-logs.db"
    with _cleaned_up(proc, value):
        wait_for(lambda: len(_numbered(db)) >= 5, timeout=60, what="the container's first lines")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: proc.poll() is not None, timeout=EXIT_BOUND, what="the forwarder to exit")
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 137, err
    assert not _containers(value, running_only=True)
    cid = cidfile.read_text().strip()  # the user's file: read, not removed
    assert f"container {cid[:12]} stopped through the daemon" in err
    assert _final(db)["Properties"]["container_id"] == cid


def test_a_signal_while_the_container_is_created_leaves_nothing_running(
    docker_kit: Any, tmp_path: Path
) -> None:
    # --stop-timeout 0: the stop is escalated at once, possibly before the docker client
    # has written the container's id; the forwarder's label on the container finds it.
    value, label = _label()
    argv = docker_kit.python_argv("-c", COUNTER, rm=True, extra=label)
    proc = start_forward(["--stop-timeout", "0", "--drain-timeout", "5", "--", *argv], tmp_path)
    with _cleaned_up(proc, value):
        wait_for(lambda: _containers(value, running_only=False), what="the container's creation")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: proc.poll() is not None, timeout=EXIT_BOUND, what="the forwarder to exit")
        _, err = proc.communicate(timeout=10)
        wait_for(
            lambda: not _containers(value, running_only=True),
            timeout=10,
            what="no container of this test running",
        )
    assert proc.returncode in (137, 143), err
    assert "Traceback" not in err
