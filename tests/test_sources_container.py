"""``--container`` without a container: the flag's rules, the errors a user meets
first (no daemon, no extra), and the small pieces of the source (the Engine API's
frames, the container's environment, times). Those that need a daemon are in
tests/test_docker_container.py."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal_logging.cli.forward import UsageError, config_from_args
from hal_logging.pipeline.checkpoint import CheckpointStore, identify
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.parsing.docker import docker_time
from hal_logging.pipeline.parsing.timestamps import parse_time
from hal_logging.pipeline.sources import Chunk, ExitStatusSource, FileInput, Idle, Opened
from hal_logging.pipeline.sources.command import CommandSource
from hal_logging.pipeline.sources.container import ContainerSource, container_env
from hal_logging.pipeline.sources.docker_engine import (
    PIECE_BYTES,
    ContainerInfo,
    info_from_attrs,
    log_frames,
    run_seconds,
    since_param,
)
from hal_logging.pipeline.sources.jsonfile import JsonFileReader
from tests.forward_helpers import run_forward

TS = b"2026-12-06T08:55:18.933517406Z"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--container", "c1", "file.log"], "no FILEs"),
        (["--container", "c1", "--follow", "x.log"], "no FILEs"),
        (["--container", "c1", "--", "docker", "run", "img"], "no command"),
        (["--container", "c1", "--input-format", "raw"], "--input-format"),
        (["--container", "  "], "needs a container name"),
        (["--container", "c1", "--raw-log", "r.log"], "wrap mode"),
        (["--container", "c1", "--resend"], "--resend"),
        (["--container", "c1", "--until-pid", "1"], "--follow"),
    ],
)
def test_container_flag_rules(argv: list[str], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        config_from_args(argv, environ={})


def test_container_flag_reads_docker_json() -> None:
    cfg = config_from_args(["--container", "agent-1"], environ={})
    assert cfg.container == "agent-1" and cfg.input_format == "docker-json"
    assert not cfg.files and not cfg.command


def test_unreachable_daemon_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # A unix socket nobody listens on any more: connection refused.
    path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    proc = run_forward(
        ["--db", str(tmp_path / "x.db"), "--container", "agent-1"],
        tmp_path,
        {"DOCKER_HOST": f"unix://{path}"},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach the Docker daemon" in lines[0] and str(path) in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_missing_extra_says_what_to_install(tmp_path: Path) -> None:
    # The package absent (as without the [docker] extra): importing it fails.
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "from hal_logging.cli.forward import main\n"
        "sys.exit(main(['--db', 'x.db', '--container', 'agent-1']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "pip install 'hal-logging[docker]'" in proc.stderr


def test_other_modes_never_import_docker(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    code = (
        "import sys\n"
        "from hal_logging.cli.forward import main\n"
        f"rc = main(['-q', '--db', 'x.db', {str(log)!r}])\n"
        "print('DOCKER', sorted(m for m in sys.modules if m.split('.')[0] == 'docker'), rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "DOCKER [] 0" in proc.stdout, proc.stderr


class _Res:
    """An HTTP response's shape as log_frames reads it: ``.raw.read(n)``."""

    def __init__(self, data: bytes) -> None:
        self.raw = io.BytesIO(data)


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_frames_keep_stdout_and_stderr_apart_and_close_split_lines() -> None:
    piece = b"x" * PIECE_BYTES
    data = b"".join(
        [
            _frame(1, TS + b" out\n"),
            _frame(2, TS + b" err\n"),
            _frame(1, TS + b" " + piece),  # a 16 KB piece: the line goes on
            _frame(1, TS + b" tail"),  # the last piece, sent without its newline
            _frame(1, TS + b" \xff\xfe\n"),
            _frame(2, b""),  # empty frames are skipped
        ]
    )
    frames = list(log_frames(_Res(data), tty=False))
    assert [(f.stream, f.data) for f in frames] == [
        ("stdout", b"out\n"),
        ("stderr", b"err\n"),
        ("stdout", piece),
        ("stdout", b"tail\n"),
        ("stdout", b"\xff\xfe\n"),
    ]
    assert {f.time for f in frames} == {TS.decode()}


def test_frames_of_a_terminal_are_lines_of_one_stream() -> None:
    data = TS + b" one\r\n" + TS + b" two\r\n" + TS + b" unfinished"
    frames = list(log_frames(_Res(data), tty=True))
    assert [(f.stream, f.data) for f in frames] == [
        ("stdout", b"one\r\n"),
        ("stdout", b"two\r\n"),
        ("stdout", b"unfinished"),
    ]


def test_terminal_stream_joins_split_lines_even_without_the_last_newline() -> None:
    piece = b"x" * PIECE_BYTES
    # A 16 KB piece, then the last piece sent without its newline (20.10, local
    # driver): the next message's time follows at once.
    data = TS + b" " + piece + TS + b" tail" + TS + b" \rprog 1\rprog 2\r\n" + TS + b" next\r\n"
    frames = list(log_frames(_Res(data), tty=True))
    assert [f.data for f in frames] == [piece, b"tail\n", b"\rprog 1\rprog 2\r\n", b"next\r\n"]
    assert {f.time for f in frames} == {TS.decode()}


def test_a_truncated_frame_ends_the_stream() -> None:
    data = _frame(1, TS + b" ok\n") + struct.pack(">BxxxL", 1, 100) + b"short"
    assert [f.data for f in log_frames(_Res(data), tty=False)] == [b"ok\n"]


def test_since_and_run_seconds() -> None:
    assert since_param("2026-12-06T08:55:18.933517406Z") == "1796547318.933517406"
    assert since_param("2026-12-06T08:55:18Z") == "1796547318.000000000"
    assert since_param("garbage") is None
    assert run_seconds("2026-12-06T08:55:18.5Z", "2026-12-06T08:55:21.75Z") == 3.25
    assert run_seconds("2026-12-06T08:55:18.5Z", "0001-01-01T00:00:00Z") is None


def test_container_env_context_given_values_and_secrets() -> None:
    image_env = {
        "PATH": "/usr/local/bin:/usr/bin",
        "PYTHON_VERSION": "3.11.9",
        "PYTHON_SHA256": "0123456789abcdef0123",
        "GPG_KEY": "A035C8C19219BA821ECEA86B64E628F8D684696D",
        "LANG": "C.UTF-8",
    }
    env = {
        **image_env,
        "LANG": "en_US.UTF-8",  # changed at docker run: the VM's value
        "HAL_RUN_ID": "R1",
        "HAL_TASK_ID": "",
        "OPENAI_API_KEY": "sk-1234567890abcdef",
        "TASK_PROMPT": "fix the failing tests",
        "CUSTOM_THING": "value-to-hide",
    }
    info = _info(Config={"Env": [f"{k}={v}" for k, v in env.items()]})
    info.image_env = image_env
    cfg = ForwardConfig(redact_env=["CUSTOM_THING"])
    assert container_env(info, cfg, environ={}) == {
        "HAL_RUN_ID": "R1",
        "HAL_TASK_ID": "",
        "HAL_EXECUTION_MODE": "docker",
        "LANG": "en_US.UTF-8",
        "OPENAI_API_KEY": "sk-1234567890abcdef",
        "TASK_PROMPT": "fix the failing tests",
        "CUSTOM_THING": "value-to-hide",
        "GPG_KEY": "A035C8C19219BA821ECEA86B64E628F8D684696D",
    }
    # The image unknown: only context, secret-looking names and named ones.
    info.image_env = None
    cfg = ForwardConfig(redact_secret_env_names=False)
    out = container_env(info, cfg, {"HAL_LOGGING_REDACT_ENV": "PATH"})
    assert out == {"HAL_RUN_ID": "R1", "HAL_EXECUTION_MODE": "docker", "PATH": image_env["PATH"]}


def _info(**kw: Any) -> ContainerInfo:
    attrs = {
        "Id": "abc123" * 10,
        "Name": "/agent-1",
        "LogPath": "/var/lib/docker/containers/x/x-json.log",
        "Config": {"Env": ["A=1", "B=x=y", "NOEQ"], "Tty": False},
        "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True},
        "HostConfig": {"LogConfig": {"Type": "json-file"}},
    }
    attrs.update(kw)
    return info_from_attrs(attrs)


def test_inspect_fields_and_the_final_row_info() -> None:
    import threading

    info = _info()
    assert (info.name, info.driver, info.env, info.running) == (
        "agent-1",
        "json-file",
        {"A": "1", "B": "x=y"},
        False,
    )
    src = ContainerSource(None, info, None, threading.Event())
    assert isinstance(src, ExitStatusSource)
    assert src.exit_status == 1  # not known yet: never 0
    src.returncode, src.oom_killed = 137, True
    assert src.exit_status == 137
    assert src.describe_status() == "exit status 137 (SIGKILL), killed by the OOM killer"
    kind, name, props, row_source = src.final_row_info()
    assert (kind, name) == ("container", "agent-1")
    assert props == {
        "container_id": info.id,
        "oom_killed": True,
        "log_driver": "json-file",
        "finished_at": None,
    }
    assert row_source == f"container:{info.id}-forward"  # stable: a rerun's row is the same
    cmd = CommandSource(["/usr/bin/docker", "run", "img"])
    assert isinstance(cmd, ExitStatusSource)
    assert cmd.final_row_info()[:3] == ("command", "docker", {})


# -- the json-file reader, on files rotated the way the daemon does it ------------------


def _rotate(path: Path) -> None:
    """What the json-file driver does at max-size: .N -> .N+1, ..., live -> .1, new live."""
    n = 1
    while Path(f"{path}.{n}").exists():
        n += 1
    for k in range(n - 1, 0, -1):
        os.rename(f"{path}.{k}", f"{path}.{k + 1}")
    os.rename(path, f"{path}.1")
    path.write_bytes(b"")


def _line(i: int) -> bytes:
    return b'{"log":"line %d\\n","stream":"stdout","time":"2026-12-06T08:55:18.9Z"}\n' % i


def _drain(it: Iterator[Any], until_idle: bool) -> list[Any]:
    out = []
    for ev in it:
        if until_idle and isinstance(ev, Idle):
            break
        out.append(ev)
    return out


def _lines(events: list[Any]) -> list[bytes]:
    data = b"".join(e.data for e in events if isinstance(e, Chunk))
    return data.splitlines(keepends=True)


def test_reader_reads_every_file_rotated_between_two_polls(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    path.write_bytes(b"".join(_line(i) for i in range(3)))
    stop, done, notes = threading.Event(), threading.Event(), []
    reader = JsonFileReader(str(path), None, stop, done, notes.append)
    it = reader.events()
    first = _drain(it, until_idle=True)
    assert _lines(first) == [_line(i) for i in range(3)]
    # The writer goes on, and the driver rotates three times before the next poll.
    with path.open("ab") as fh:
        fh.write(_line(3))
    i = 4
    for _ in range(3):
        _rotate(path)
        path.write_bytes(_line(i) + _line(i + 1))
        i += 2
    done.set()  # the container exited
    rest = _drain(it, until_idle=False)
    assert _lines(rest) == [_line(k) for k in range(3, i)], notes
    opened = [e for e in first + rest if isinstance(e, Opened)]
    assert len(opened) == 4 and len({e.source for e in opened}) == 4  # one generation a file
    assert not notes


def test_reader_resumes_in_a_file_renamed_since_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    path.write_bytes(b"".join(_line(i) for i in range(4)))
    store = CheckpointStore(str(tmp_path / "ckpt")).open()
    try:
        fd = os.open(path, os.O_RDONLY)
        ident = identify(fd, final=True)
        assert ident is not None
        half = len(_line(0)) * 2
        store.commit({str(path): FileInput(str(path), fd, ident, store).entry(ident.source, half)})
        os.close(fd)
        _rotate(path)
        path.write_bytes(_line(4))
        _rotate(path)  # the checkpointed file is now c-json.log.2
        path.write_bytes(_line(5))
        done = threading.Event()
        done.set()
        reader = JsonFileReader(str(path), store, threading.Event(), done, lambda _m: None)
        events = list(reader.events())
    finally:
        store.close()
    assert _lines(events) == [_line(k) for k in (2, 3, 4, 5)]
    assert reader.resumed
    first = next(e for e in events if isinstance(e, Opened))
    assert (first.source, first.start) == (ident.source, half)  # same ids as before


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31)),
    st.integers(min_value=0, max_value=999_999_999),
    st.integers(min_value=0, max_value=10),
    st.sampled_from(["Z", "z", "+01:00", ""]),
)
def test_docker_time_is_parse_time_only_faster(
    when: datetime, nanos: int, digits: int, tz: str
) -> None:
    frac = f"{nanos:09d}"[:digits]
    value = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + tz
    assert docker_time(value) == parse_time(value)


@pytest.mark.parametrize("value", ["2026-02-30T09:14:00.1Z", "2026-12-06T25:00:00Z", None, 7])
def test_docker_time_odd_values(value: object) -> None:
    assert docker_time(value) == parse_time(value)
