"""configure() on a terminal: console only for a person, wire lines for a harness.

``docker run -t`` gives the container a pseudo-terminal read by the Docker daemon
(and the forwarder), not a person: inside a container, or whenever a run or task
id is set, ``configure()`` keeps writing wire lines. Real pseudo-terminals
(``pty.openpty``) and a fake root for the container probe.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hal_logging.configure import in_container

from .container_helpers import clean_env, wire_row
from .test_container_configure import _run_on_tty

CODE = (
    "import hal_logging; hal_logging.configure(); "
    "hal_logging.get_logger('h').info('hello', extra={'n': 1})"
)


def _host(tmp_path: Path) -> Path:
    """A fake root that looks like a person's machine (no container traces)."""
    root = tmp_path / "host"
    (root / "proc" / "1").mkdir(parents=True)
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "1" / "cgroup").write_text("0::/init.scope\n")
    (root / "proc" / "self" / "mountinfo").write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    )
    return root


def _wire(out: bytes) -> dict[str, object]:
    lines = [ln for ln in out.decode().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    # A terminal ends lines with \r\n: the wire line is still one JSON object.
    return wire_row(lines[0].rstrip("\r"))


def test_probe_finds_docker_containerd_kubernetes_podman_and_not_a_host(tmp_path: Path) -> None:
    host = _host(tmp_path)
    assert not in_container(str(host))
    assert not in_container(str(tmp_path / "empty"))  # nothing readable: not a container

    dockerenv = tmp_path / "dockerenv"
    dockerenv.mkdir()
    (dockerenv / ".dockerenv").write_text("")
    assert in_container(str(dockerenv))

    podman = tmp_path / "podman"
    (podman / "run").mkdir(parents=True)
    (podman / "run" / ".containerenv").write_text("")
    assert in_container(str(podman))

    for word, where in (
        ("12:memory:/docker/0123abcd\n", "proc/1/cgroup"),
        ("0::/kubepods/burstable/pod42/abc\n", "proc/1/cgroup"),
        ("0::/system.slice/containerd.service/x\n", "proc/self/cgroup"),
        (
            "600 500 0:50 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X\n",
            "proc/self/mountinfo",
        ),
    ):
        root = tmp_path / f"case{abs(hash(word))}"
        (root / where).parent.mkdir(parents=True)
        (root / where).write_text(word)
        assert in_container(str(root)), word


def test_on_a_person_s_terminal_the_console_format(tmp_path: Path) -> None:
    out = _run_on_tty(CODE, clean_env(HAL_LOGGING_PROBE_ROOT=str(_host(tmp_path)))).decode()
    assert "h: hello" in out and "n=1" in out and '{"_hal"' not in out


def test_in_a_container_a_terminal_still_gets_wire_lines(tmp_path: Path) -> None:
    root = _host(tmp_path)
    (root / ".dockerenv").write_text("")
    row = _wire(_run_on_tty(CODE, clean_env(HAL_LOGGING_PROBE_ROOT=str(root))))
    assert row["Message"] == "hello" and row["Properties"] == {"n": 1, "src": "<string>:<module>:1"}


@pytest.mark.parametrize("var", ["HAL_RUN_ID", "HAL_TASK_ID"])
def test_with_a_run_context_a_terminal_still_gets_wire_lines(tmp_path: Path, var: str) -> None:
    env = clean_env(HAL_LOGGING_PROBE_ROOT=str(_host(tmp_path)), **{var: "ctx-1"})
    row = _wire(_run_on_tty(CODE, env))
    assert row["Message"] == "hello"
    assert row["RunID" if var == "HAL_RUN_ID" else "TaskID"] == "ctx-1"


def test_context_given_to_configure_counts_too(tmp_path: Path) -> None:
    code = CODE.replace("configure()", "configure(run_id='R9')")
    row = _wire(_run_on_tty(code, clean_env(HAL_LOGGING_PROBE_ROOT=str(_host(tmp_path)))))
    assert row["RunID"] == "R9"


def test_hal_log_format_overrides_both_ways(tmp_path: Path) -> None:
    container = _host(tmp_path)
    (container / ".dockerenv").write_text("")
    out = _run_on_tty(
        CODE,
        clean_env(HAL_LOGGING_PROBE_ROOT=str(container), HAL_RUN_ID="R1", HAL_LOG_FORMAT="console"),
    ).decode()
    assert "h: hello" in out and '{"_hal"' not in out
    row = _wire(
        _run_on_tty(
            CODE,
            clean_env(HAL_LOGGING_PROBE_ROOT=str(_host(tmp_path / "p")), HAL_LOG_FORMAT="json"),
        )
    )
    assert row["Message"] == "hello"
