"""``hal-logging-forward --container``, against a real Docker daemon (issue 12).

A hostile agent (tests/fixtures/container_agent.py) runs in a real container
started the way harnesses do (``docker run -d``); the forwarder attaches to it
while it runs (the agent waits at a gate until the forwarder's first rows are
in the workspace) or after it exited, and the rows must be those of the same
program run through plain pipes in wrap mode, apart from stream-level details
(where a text row's time comes from, the offsets and ids). Both ways of
reading are covered: the json-file log (Docker's default) and the Engine API
stream (``--log-driver local``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.forward_helpers import (
    clean_env,
    db_rows,
    forward_cmd,
    reaped,
    run_forward,
    start_forward,
)
from tests.waiting import wait_for

AGENT = Path(__file__).resolve().parent / "fixtures" / "container_agent.py"
SECRET = "sk-agentsecret-4f9a1c77e2b3"
CONTAINER_ENV = {
    "HAL_RUN_ID": "R-container",
    "HAL_TASK_ID": "T-7",
    "HAL_BENCHMARK": "corebench",
    "HAL_AGENT_NAME": "hostile",
    "HAL_EXECUTION_MODE": "docker",
    "AGENT_API_KEY": SECRET,
}
FORWARDER = "hal_logging.forward"
DRIVERS = ("json-file", "local")


@pytest.fixture
def containers(docker_kit: Any) -> Iterator[list[str]]:
    """Ids of containers a test started; removed at its end."""
    started: list[str] = []
    yield started
    docker_kit.remove(*started)


def _start(
    kit: Any,
    started: list[str],
    *,
    driver: str = "json-file",
    env: dict[str, str] | None = None,
    gate_dir: Path | None = None,
    extra: tuple[str, ...] = (),
    program: tuple[str, ...] = (str(AGENT),),
) -> str:
    argv = kit.python_argv(
        *program,
        env={**CONTAINER_ENV, **(env or {})},
        detach=True,
        writable=[gate_dir] if gate_dir else (),
        extra=["--log-driver", driver, *extra],
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    cid = out.stdout.strip()
    started.append(cid)
    return cid


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()


def _fenv(tmp: Path, **extra: str) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp / "state"), **extra}


def _norm(row: dict[str, Any]) -> dict[str, Any]:
    """A row without what depends on how the bytes arrived (stream offsets, ids, the
    docker- prefix of the format) or on when the program ran (TimeGenerated)."""
    props = dict(row["Properties"])
    hal = props.pop("hal", {})
    out = {
        k: row[k]
        for k in (
            "Level",
            "Message",
            "LoggerName",
            "RunID",
            "TaskID",
            "Benchmark",
            "AgentName",
            "ExecutionMode",
            "ExecutedBy",
            "LogType",
        )
    }
    out["Properties"] = props
    out["claimed"] = hal.get("claimed")
    out["stream"] = hal.get("stream")
    fmt = str(hal.get("format", ""))
    out["format"] = fmt.removeprefix("docker-json+")
    return out


def _agent_rows(db: Path) -> list[dict[str, Any]]:
    rows = [_norm(r) for r in db_rows(db) if r["LoggerName"] != FORWARDER]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _wait_alongside(fwd: subprocess.Popen[str], cond: Any, what: str) -> None:
    """wait_for(cond) while the forwarder runs; a failure shows the forwarder's stderr."""
    try:
        wait_for(lambda: cond() or fwd.poll() is not None, 60, what)
    except AssertionError as exc:
        fwd.kill()
        raise AssertionError(f"{exc}; the forwarder said: {fwd.communicate()[1]}") from None
    if not cond():
        raise AssertionError(f"the forwarder ended ({fwd.returncode}): {fwd.communicate()[1]}")


def _wait_then_kill(fwd: subprocess.Popen[str], cond: Any, what: str) -> None:
    """_wait_alongside, then SIGKILL the forwarder (also when the wait failed)."""
    try:
        _wait_alongside(fwd, cond, what)
    finally:
        fwd.send_signal(signal.SIGKILL)
        fwd.communicate(timeout=30)


def _gate(tmp: Path) -> tuple[Path, Path]:
    """A directory the container may write, and the file in it that opens its gate."""
    gate_dir = tmp / "gate"
    gate_dir.mkdir()
    return gate_dir, gate_dir / "go"


def _follow_args(db: Path, cid: str) -> list[str]:
    """The forwarder's arguments for following container ``cid`` into ``db``."""
    return ["--db", str(db), "--container", cid]


def _checkpoint(tmp: Path, cid: str) -> Path:
    """Where the forwarder (XDG_STATE_HOME from _fenv) keeps container ``cid``'s checkpoint."""
    return tmp / "state" / "hal-logging" / "checkpoints" / f"container-{cid}.hal-checkpoint"


def _printed(db: Path, message: str) -> Callable[[], bool]:
    """A condition: a row with this message is in the workspace."""
    return lambda: any(r["Message"] == message for r in db_rows(db))


def _start_following(db: Path, cid: str, tmp: Path) -> subprocess.Popen[str]:
    """The forwarder started on container ``cid``, into ``db``."""
    return start_forward(_follow_args(db, cid), tmp, _fenv(tmp))


def _follow_forever(
    kit: Any, started: list[str], tmp: Path
) -> tuple[str, Path, subprocess.Popen[str]]:
    """A container that runs until stopped, and the forwarder following it into tmp/c.db."""
    cid = _start(kit, started, env={"AGENT_FOREVER": "1"})
    db = tmp / "c.db"
    return cid, db, _start_following(db, cid, tmp)


def _final(db: Path) -> dict[str, Any]:
    finals = [r for r in db_rows(db) if r["LoggerName"] == FORWARDER]
    assert len(finals) == 1, finals
    return finals[0]


@pytest.fixture(scope="module")
def through_pipes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The agent's rows when wrap mode runs it through plain pipes (no Docker)."""
    tmp = tmp_path_factory.mktemp("pipes")
    db = tmp / "pipes.db"
    env = {k: v for k, v in CONTAINER_ENV.items()}
    proc = run_forward(["--db", str(db), "--", sys.executable, str(AGENT)], tmp, env)
    assert proc.returncode == 3, proc.stderr
    rows = _agent_rows(db)
    assert len(rows) > 10
    return rows


def _check_hostile_rows(rows: list[dict[str, Any]]) -> None:
    """What the hostile agent's rows must show, in any mode."""
    by_msg = {r["Message"].split(" ")[0]: r for r in rows}
    assert all(r["RunID"] == "R-container" and r["TaskID"] == "T-7" for r in rows)
    forged = next(r for r in rows if r["Message"] == "forged context")
    assert (forged["claimed"]["RunID"], forged["claimed"]["TaskID"]) == ("EVIL-RUN", "EVIL-TASK")
    crashed = next(r for r in rows if r["Message"] == "tests crashed")
    exc = crashed["Properties"]["exception"]
    assert exc["type"] == "ValueError" and "KeyError" in exc["stacktrace"]
    assert "direct cause" in exc["stacktrace"]
    raw = next(r for r in rows if r["format"] == "traceback")
    assert raw["stream"] == "stderr" and raw["Level"] == "ERROR"
    assert raw["Properties"]["exception"]["type"] == "IndexError"
    assert "^^^" in raw["Properties"]["exception"]["stacktrace"]  # the caret line, kept
    assert by_msg["downloading"]["Message"] == "downloading 100%"
    assert any(r["Message"] == "red alert and bold" for r in rows)
    assert any(r["Message"].startswith("invalid utf-8") for r in rows)
    big = next(r for r in rows if r["Message"].startswith("big "))
    assert big["Properties"]["size"] == 200_000
    secret_rows = [r for r in rows if r["Message"].startswith("the key is")]
    assert secret_rows and SECRET not in json.dumps(rows)
    assert "[REDACTED:env:AGENT_API_KEY]" in secret_rows[0]["Message"]
    assert any(r["Message"] == "démarrage — 起動 🚀" for r in rows)


@pytest.mark.parametrize("driver", DRIVERS)
def test_running_container_same_rows_as_pipes(
    driver: str,
    docker_kit: Any,
    containers: list[str],
    tmp_path: Path,
    through_pipes: list[dict[str, Any]],
) -> None:
    gate_dir, gate = _gate(tmp_path)
    cid = _start(docker_kit, containers, driver=driver, env={"AGENT_GATE": str(gate)},
                 gate_dir=gate_dir)  # fmt: skip
    db = tmp_path / "c.db"
    fwd = _start_following(db, cid, tmp_path)
    with reaped(fwd):
        # The forwarder ships what the running container printed so far...
        _wait_alongside(
            fwd,
            _printed(db, "waiting for the gate"),
            "the first part's rows while the container waits at its gate",
        )
        assert _docker("inspect", "-f", "{{.State.Running}}", cid) == "true"
        gate.touch()  # ...and then follows it to its exit.
        _out, err = fwd.communicate(timeout=120)
    assert fwd.returncode == 3, err
    rows = [r for r in _agent_rows(db) if r["Message"] != "waiting for the gate"]
    _check_hostile_rows(rows)
    assert rows == through_pipes, _diff(rows, through_pipes)
    final = _final(db)
    assert final["Properties"]["exit_status"] == 3
    assert final["Properties"]["oom_killed"] is False
    assert final["Properties"]["container_id"] == cid
    assert final["Properties"]["log_driver"] == driver
    finished = _docker("inspect", "-f", "{{.State.FinishedAt}}", cid)
    assert final["Properties"]["finished_at"] == finished
    assert final["Level"] == "ERROR" and final["RunID"] == "R-container"
    assert final["ExecutionMode"] == "docker"


def test_exited_container_same_rows_and_flags_win(
    docker_kit: Any,
    containers: list[str],
    tmp_path: Path,
    through_pipes: list[dict[str, Any]],
) -> None:
    cid = _start(docker_kit, containers, env={"HAL_EXECUTION_MODE": ""})
    assert _docker("wait", cid) == "3"
    db = tmp_path / "c.db"
    proc = run_forward(_follow_args(db, cid), tmp_path, _fenv(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = _agent_rows(db)
    _check_hostile_rows(rows)
    # Without HAL_EXECUTION_MODE anywhere, the forwarder says what it knows: docker.
    assert {r["ExecutionMode"] for r in rows} == {"docker"}
    assert [{**r, "ExecutionMode": "docker"} for r in rows] == through_pipes
    # A rerun finds everything delivered: nothing stored twice.
    n = len(db_rows(db))
    again = run_forward(_follow_args(db, cid), tmp_path, _fenv(tmp_path))
    assert again.returncode == 3, again.stderr
    assert len(db_rows(db)) == n and "resumed from the checkpoint" in again.stderr
    # A flag is the VM's word too, and wins over the container's environment.
    db2 = tmp_path / "flag.db"
    flag = run_forward(
        ["--db", str(db2), "--task-id", "T-flag", "--no-checkpoint", "--container", cid],
        tmp_path,
        _fenv(tmp_path),
    )
    assert flag.returncode == 3, flag.stderr
    hello = next(r for r in db_rows(db2) if r["Message"].startswith("démarrage"))
    assert hello["TaskID"] == "T-flag"
    assert hello["Properties"]["hal"]["claimed"]["TaskID"] == "T-7"


@pytest.mark.parametrize(
    ("driver", "log_opts"),
    [
        ("json-file", ()),
        # Rotated many times between two polls, and while the forwarder is down.
        ("json-file", ("--log-opt", "max-size=200k", "--log-opt", "max-file=50")),
        ("local", ()),
    ],
    ids=["json-file", "json-file-rotating", "local"],
)
def test_rerun_after_sigkill_loses_nothing_and_stores_nothing_twice(
    driver: str, log_opts: tuple[str, ...], docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    gate_dir, gate = _gate(tmp_path)
    n = 3000
    cid = _start(
        docker_kit,
        containers,
        driver=driver,
        env={"AGENT_GATE": str(gate), "AGENT_LINES_BEFORE": str(n), "AGENT_LINES": str(n)},
        gate_dir=gate_dir,
        extra=log_opts,
    )
    db = tmp_path / "c.db"
    args = ["--db", str(db), "--batch-rows", "200", "--container", cid]
    ckpt = _checkpoint(tmp_path, cid)
    fwd = start_forward(args, tmp_path, _fenv(tmp_path))
    _wait_then_kill(
        fwd,
        lambda: ckpt.exists() and len(db_rows(db)) >= 100,
        "the first rows in the workspace and a checkpoint",
    )
    killed_at = len(db_rows(db))
    gate.touch()
    assert _docker("wait", cid) == "3"
    proc = run_forward(args, tmp_path, _fenv(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert "resumed from the checkpoint" in proc.stderr
    assert "no longer matches the checkpoint" not in proc.stderr
    rows = db_rows(db)
    msgs = [r["Message"] for r in rows if r["LoggerName"] != FORWARDER]
    expected = {f"before {i}" for i in range(n)} | {f"line {i}" for i in range(n)}
    numbered = [m for m in msgs if m.startswith(("before ", "line "))]
    assert set(numbered) == expected, "rows lost"
    assert len(numbered) == len(expected), "rows stored twice"
    assert len(msgs) == len(set(msgs)), "rows stored twice"
    assert killed_at < len(rows)
    if log_opts:
        log_path = _docker("inspect", "-f", "{{.LogPath}}", cid)
        assert Path(log_path + ".3").exists(), "the log did not rotate: the test proves nothing"
    assert _final(db)["Properties"]["exit_status"] == 3


def test_docker_kill_leaves_a_final_row_with_137(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    cid, db, fwd = _follow_forever(docker_kit, containers, tmp_path)
    with reaped(fwd):
        _wait_alongside(fwd, _printed(db, "waiting forever"), "the container's last line")
        _docker("kill", cid)
        _out, err = fwd.communicate(timeout=120)
    assert fwd.returncode == 137, err
    final = _final(db)
    assert final["Properties"]["exit_status"] == 137
    assert final["Properties"]["oom_killed"] is False
    assert "SIGKILL" in final["Message"] and final["Level"] == "ERROR"


def test_oom_killed_container_leaves_a_final_row_with_137_and_the_flag(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    program = (
        "-c",
        "print('allocating', flush=True); x = [bytearray(1 << 20) for _ in range(1000)]",
    )
    cid = _start(
        docker_kit,
        containers,
        program=program,
        extra=("--memory", "32m", "--memory-swap", "32m"),
    )
    db = tmp_path / "c.db"
    proc = run_forward(_follow_args(db, cid), tmp_path, _fenv(tmp_path))
    if _docker("inspect", "-f", "{{.State.OOMKilled}}", cid) != "true":
        pytest.skip("this daemon does not enforce --memory (no memory cgroup): no OOM kill")
    assert proc.returncode == 137, proc.stderr
    final = _final(db)
    assert final["Properties"]["exit_status"] == 137
    assert final["Properties"]["oom_killed"] is True
    assert "OOM killer" in final["Message"]
    assert any(r["Message"] == "allocating" for r in db_rows(db))


def test_gone_container_is_one_line_and_exit_1(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    # A container run with --rm is removed once it exits: nothing left to read.
    cidfile = tmp_path / "cid"
    argv = docker_kit.python_argv("-c", "print('bye')", rm=True, extra=["--cidfile", str(cidfile)])
    subprocess.run(argv, capture_output=True, timeout=60, check=True)
    cid = cidfile.read_text().strip()
    for target in (cid, "hal-logging-no-such-container"):
        proc = run_forward(["--db", str(tmp_path / "c.db"), "--container", target], tmp_path)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "no such container" in lines[0] and target in lines[0]
        assert not (tmp_path / "c.db").exists()


def test_a_second_forwarder_on_the_same_container_is_refused(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    cid, db, fwd = _follow_forever(docker_kit, containers, tmp_path)
    with reaped(fwd):
        _wait_alongside(fwd, lambda: len(db_rows(db)) > 0, "the first forwarder's rows")
        second = run_forward(_follow_args(db, cid), tmp_path, _fenv(tmp_path))
        assert second.returncode == 1
        assert "in use by another hal-logging-forward" in second.stderr
        # SIGTERM before the container exited: delivered what it read, says it is not
        # complete (75), and a rerun would resume.
        fwd.send_signal(signal.SIGTERM)
        _out, err = fwd.communicate(timeout=60)
    assert fwd.returncode == 75, err
    assert "rerun the same command to resume" in err
    assert not [r for r in db_rows(db) if r["LoggerName"] == FORWARDER]


def _diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """The rows that differ, for a readable failure."""
    sa = {json.dumps(r, sort_keys=True) for r in a}
    sb = {json.dumps(r, sort_keys=True) for r in b}
    only_a = sorted(x[:400] for x in sa - sb)
    only_b = sorted(x[:400] for x in sb - sa)
    return "only here:\n" + "\n".join(only_a) + "\nonly through pipes:\n" + "\n".join(only_b)


@pytest.mark.parametrize("driver", DRIVERS)
def test_container_with_a_terminal(
    driver: str, docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    """``docker run -t``: one stream with ``\\r\\n`` line ends; long lines still whole."""
    program = (
        "-c",
        "import sys; print('hello tty'); print('x' * 40000); "
        "sys.stdout.write('\\rprog 1\\rprog 2\\n'); print('bye'); sys.exit(5)",
    )
    cid = _start(docker_kit, containers, driver=driver, program=program, extra=("-t",))
    assert _docker("wait", cid) == "5"
    db = tmp_path / "c.db"
    proc = run_forward(_follow_args(db, cid), tmp_path, _fenv(tmp_path))
    assert proc.returncode == 5, proc.stderr
    rows = [r for r in db_rows(db) if r["LoggerName"] != FORWARDER]
    assert [r["Message"] for r in rows] == ["hello tty", "x" * 40000, "prog 2", "bye"]
    assert {r["Properties"]["hal"]["stream"] for r in rows} == {"stdout"}


def test_engine_api_rerun_after_the_driver_dropped_old_messages(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    """The `local` driver keeps a bounded log: once it dropped what the checkpoint
    counted, the rerun resumes from the checkpoint's time and loses nothing the
    daemon still has (rows near that time may be stored twice: documented)."""
    gate_dir, gate = _gate(tmp_path)
    cid = _start(
        docker_kit,
        containers,
        driver="local",
        env={"AGENT_GATE": str(gate), "AGENT_LINES_BEFORE": "300", "AGENT_LINES": "4000"},
        gate_dir=gate_dir,
        extra=("--log-opt", "max-size=100k", "--log-opt", "max-file=2"),
    )
    db = tmp_path / "c.db"
    args = _follow_args(db, cid)
    ckpt = _checkpoint(tmp_path, cid)
    fwd = start_forward(args, tmp_path, _fenv(tmp_path))
    _wait_then_kill(
        fwd,
        lambda: ckpt.exists() and any(r["Message"] == "waiting for the gate" for r in db_rows(db)),
        "the first part delivered and checkpointed",
    )
    gate.touch()
    assert _docker("wait", cid) == "3"
    proc = run_forward(args, tmp_path, _fenv(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert "no longer matches the checkpoint" in proc.stderr
    kept = subprocess.run(["docker", "logs", cid], capture_output=True, timeout=60).stdout
    still = {
        json.loads(line)["Message"]
        for line in kept.splitlines()
        if line.startswith(b'{"_hal"') and b'"line ' in line
    }
    assert still and "line 0" not in still  # the driver did drop old lines
    stored = {r["Message"] for r in db_rows(db)}
    assert still <= stored, sorted(still - stored)[:5]
    assert {f"before {i}" for i in range(300)} <= stored


def test_values_given_at_docker_run_are_redacted_like_dash_e(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    """`-e NAME=VALUE` / `--env-file` values reach the container's environment; any
    name, as in wrap mode, while the image's own variables are left alone."""
    env_file = tmp_path / "task.env"
    env_file.write_text("FROM_ENV_FILE=envfile-value-9d8c7b\n")
    program = (
        "-c",
        "import os; print('given', os.environ['TASK_NOTE']); "
        "print('file', os.environ['FROM_ENV_FILE']); print('path', os.environ['PATH'])",
    )
    cid = _start(
        docker_kit,
        containers,
        program=program,
        env={"TASK_NOTE": "plain-note-value-4f2e"},
        extra=("--env-file", str(env_file)),
    )
    assert _docker("wait", cid) == "0"
    db = tmp_path / "c.db"
    proc = run_forward(_follow_args(db, cid), tmp_path, _fenv(tmp_path))
    assert proc.returncode == 0, proc.stderr
    msgs = {r["Message"] for r in db_rows(db)}
    assert "given [REDACTED:env:TASK_NOTE]" in msgs
    assert "file [REDACTED:env:FROM_ENV_FILE]" in msgs
    path = _docker("inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", cid)
    assert any(m.startswith("path /") for m in msgs), path  # PATH is no secret
    assert "plain-note-value-4f2e" not in json.dumps([r for r in db_rows(db)])


def test_created_container_is_followed_once_started(
    docker_kit: Any, containers: list[str], tmp_path: Path
) -> None:
    argv = docker_kit.python_argv("-c", "print('started at last'); raise SystemExit(4)")
    argv[1] = "create"  # docker create: the container exists, its program has not run
    cid = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    cid = cid.strip()
    containers.append(cid)
    db = tmp_path / "c.db"
    err = tmp_path / "err.txt"
    with err.open("wb") as fh:
        fwd = subprocess.Popen(
            forward_cmd("--db", str(db), "--container", cid),
            cwd=tmp_path,
            env=clean_env(_fenv(tmp_path)),
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    with reaped(fwd):
        wait_for(lambda: "created but not started" in err.read_text(), 60, "the wait notice")
        _docker("start", cid)
        assert fwd.wait(timeout=120) == 4, err.read_text()
    assert [r["Message"] for r in db_rows(db)][:1] == ["started at last"]
    assert _final(db)["Properties"]["exit_status"] == 4


@pytest.mark.parametrize("driver", DRIVERS)
def test_rm_container_followed_to_its_removal(
    driver: str,
    docker_kit: Any,
    containers: list[str],
    tmp_path: Path,
    through_pipes: list[dict[str, Any]],
) -> None:
    """`docker run -d --rm`: the daemon removes the container (and its log) at its
    exit; what it printed is still read to the end, with its exit status."""
    gate_dir, gate = _gate(tmp_path)
    cid = _start(
        docker_kit,
        containers,
        driver=driver,
        env={"AGENT_GATE": str(gate)},
        gate_dir=gate_dir,
        extra=("--rm",),
    )
    db = tmp_path / "c.db"
    fwd = _start_following(db, cid, tmp_path)
    with reaped(fwd):
        _wait_alongside(fwd, _printed(db, "waiting for the gate"), "the first part's rows")
        gate.touch()
        _out, err = fwd.communicate(timeout=120)
    assert fwd.returncode == 3, err
    rows = [r for r in _agent_rows(db) if r["Message"] != "waiting for the gate"]
    assert rows == through_pipes, _diff(rows, through_pipes)
    final = _final(db)
    assert final["Properties"]["exit_status"] == 3
