"""The Docker test kit itself: a real container runs this checkout's hal_logging."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def test_container_runs_configure_and_writes_a_wire_line(docker_kit: Any) -> None:
    argv = docker_kit.python_argv(
        "-c",
        "import hal_logging, logging; hal_logging.configure(); "
        "logging.getLogger('agent').info('hello', extra={'n': 1})",
        env={"HAL_RUN_ID": "R1", "HAL_TASK_ID": "T1"},
        rm=True,
    )
    out = subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout
    row = json.loads(out.decode().strip())
    assert (row["_hal"], row["RunID"], row["TaskID"], row["Message"]) == (1, "R1", "T1", "hello")
    assert row["Properties"]["n"] == 1


def test_containers_have_no_network(docker_kit: Any) -> None:
    argv = docker_kit.python_argv(
        "-c",
        "import socket; print(sorted({i[1] for i in socket.if_nameindex()}))",
        rm=True,
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "['lo']"
