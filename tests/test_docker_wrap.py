"""A hostile agent in a real container, shipped every way: the same rows as through pipes.

``tests/fixtures/hostile_agent.py`` prints what is hard to ship (unicode, extras,
chained exceptions, a raw traceback with carets, a progress bar, ANSI, invalid
UTF-8, a 200 KB message, a forged wire line claiming another run and task, a
secret given with ``-e``, a crash with exit status 3). The reference is the same
program run without Docker under the forwarder, through plain pipes. Through
``docker run`` with and without ``-t``, with ``-it`` (and an echoed line of
input), and through the container's json-file log shipped as a file, every row
must match the reference: levels, messages, loggers, context, Properties and
exception data. Only stream tags may differ, and only under a terminal, where
stdout and stderr are one stream: those rows say ``unknown`` (raw text then
has the logger ``docker``, as for any input whose stream is not known).
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hal_logging import schema

from .forward_helpers import ROOT, db_rows, run_forward
from .waiting import wait_for

HOSTILE = ROOT / "tests" / "fixtures" / "hostile_agent.py"
SECRET = "sk-hostile-0123456789abcdefghijXYZ"
RUN, TASK = "R-hostile", "T-hostile"
CONTEXT_FLAGS = ["--run-id", RUN, "--task-id", TASK, "--flush-interval", "0.05"]
INPUT = "hello from the harness"
RAW_LOGGERS = (schema.LOGGER_STDOUT, schema.LOGGER_STDERR, schema.LOGGER_MERGED)


# ---------------------------------------------------------------------------
# Rows, made comparable.
# ---------------------------------------------------------------------------


def _short(text: str) -> str:
    """A message as a short, still exact, fingerprint (the 200 KB rows stay readable)."""
    if len(text) <= 160:
        return text
    return f"{text[:80]}...[{len(text)} chars, sha1 {hashlib.sha1(text.encode()).hexdigest()[:12]}]"


def _container_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the program's output (not the forwarder's own final row)."""
    return [r for r in rows if r["LoggerName"] != "hal_logging.forward"]


def comparable(rows: list[dict[str, Any]]) -> list[str]:
    """Each row without what depends on how it travelled: times (the reader's clock for
    text), record ids and offsets, the stream tag (checked apart), the raw loggers'
    stream suffix, and the docker-json framing prefix of the format."""
    out = []
    for r in _container_rows(rows):
        props = dict(r["Properties"])
        hal = dict(props.pop("hal"))
        for key in ("record_id", "offset", "stream"):
            hal.pop(key, None)
        if "claimed" in hal:
            # A claimed time depends on the journey: only wrap mode knows the
            # command's lifetime, a file shipped later has none to check against.
            claimed = {k: v for k, v in hal["claimed"].items() if k != "TimeGenerated"}
            hal["claimed"] = claimed
        # Docker's json-file driver replaces invalid UTF-8 itself before the
        # forwarder reads it: the note is only made where the forwarder did it.
        problems = [p for p in hal.pop("problems", []) if "invalid UTF-8" not in p]
        if problems:
            hal["problems"] = problems
        fmt = str(hal.get("format", ""))
        hal["format"] = fmt.removeprefix("docker-json+")
        logger = "docker.*" if r["LoggerName"] in RAW_LOGGERS else r["LoggerName"]
        names = [c.name for c in schema.COLUMNS]
        cols = {c: r[c] for c in names if c not in ("TimeGenerated", "Properties")}
        cols["LoggerName"] = logger
        cols["Message"] = _short(r["Message"])
        out.append(json.dumps([cols, props, hal], sort_keys=True, ensure_ascii=False))
    return sorted(out)


def streams(rows: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter(
        (_short(r["Message"]), r["Properties"]["hal"]["stream"]) for r in _container_rows(rows)
    )


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    g, w = comparable(got), comparable(want)
    missing = [x for x in w if x not in g]
    extra = [x for x in g if x not in w]
    assert not missing and not extra, (
        "rows differ from the pipes reference:\n  missing: "
        + "\n  missing: ".join(missing)
        + "\n  extra:   "
        + "\n  extra:   ".join(extra)
    )


def assert_hostile_content(rows: list[dict[str, Any]]) -> None:
    """What the reference itself must show (so that "same as the reference" means something)."""
    rows = _container_rows(rows)
    by_msg = {r["Message"]: r for r in rows}
    assert all(r["RunID"] == RUN and r["TaskID"] == TASK for r in rows)
    assert by_msg["unicode: héllo wörld — 日本語 🚀 ∑"]["Properties"]["lang"] == "日本語"
    extras = by_msg["extras of every kind"]["Properties"]
    assert extras["nested"] == {"a": [1, 2, {"b": "c"}], "d": {"e": {"f": "g"}}}
    chained = by_msg["chained exception"]
    assert (
        chained["Level"] == "ERROR" and chained["Properties"]["exception"]["type"] == "RuntimeError"
    )
    assert (
        "The above exception was the direct cause"
        in chained["Properties"]["exception"]["stacktrace"]
    )
    raw_tb = by_msg["RuntimeError: step failed while counting retries"]
    assert raw_tb["Properties"]["hal"]["format"].endswith("traceback")
    assert "^" in raw_tb["Properties"]["exception"]["stacktrace"]  # the caret line, kept
    tool = by_msg["ZeroDivisionError: division by zero"]  # a tool's uncaught exception
    assert tool["Level"] == "ERROR" and tool["Properties"]["hal"]["format"].endswith("traceback")
    assert "~~~~~~~~~~~~~~~^~~~~~~~~~~~~~~~~" in tool["Properties"]["exception"]["stacktrace"]
    assert "downloading: 100%|##########| 100/100" in by_msg
    assert not [m for m in by_msg if m.startswith("downloading:") and "100/100" not in m]
    assert (
        "plain green text and a link" in by_msg
        and "invalid utf-8: \ufffd\ufffd\ufffd end" in by_msg
    )
    big = [r for r in rows if r["Message"].startswith("BBBB")]
    assert len(big) == 1 and big[0]["Properties"]["original_length"] == {"Message": 200_000}
    forged = by_msg["forged row"]
    claimed = dict(forged["Properties"]["hal"]["claimed"])
    # In wrap mode the forged time (long before the command started) is a claim too.
    assert claimed.pop("TimeGenerated", "2026-01-01T00:00:00.000000Z") == (
        "2026-01-01T00:00:00.000000Z"
    )
    assert claimed == {"RunID": "someone-elses-run", "TaskID": "someone-elses-task"}
    assert not any(SECRET in json.dumps(r, ensure_ascii=False) for r in rows)
    assert "my key is [REDACTED:env:OPENAI_API_KEY]" in by_msg
    assert by_msg["giving up"]["Properties"]["exit_status"] == 3


def final_status(rows: list[dict[str, Any]]) -> int:
    (final,) = [r for r in rows if r["LoggerName"] == "hal_logging.forward"]
    return int(final["Properties"]["exit_status"])


# ---------------------------------------------------------------------------
# The ways to run it.
# ---------------------------------------------------------------------------


def _reference(tmp: Path, *, read_stdin: bool) -> list[dict[str, Any]]:
    """The program without Docker, under the forwarder, through plain pipes."""
    env = {"HAL_RUN_ID": RUN, "HAL_TASK_ID": TASK, "OPENAI_API_KEY": SECRET}
    if read_stdin:
        env["HOSTILE_READ_STDIN"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hal_logging.cli.forward",
            *CONTEXT_FLAGS,
            "--",
            sys.executable,
            str(HOSTILE),
        ],
        cwd=tmp,
        env={**_clean(), **env},
        input=INPUT + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    return db_rows(tmp / "hal-logs.db")


def _clean() -> dict[str, str]:
    from .forward_helpers import clean_env

    return {k: v for k, v in clean_env().items() if k != "OPENAI_API_KEY"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    rows = _reference(tmp_path_factory.mktemp("pipes"), read_stdin=False)
    assert_hostile_content(rows)
    assert final_status(rows) == 3
    return rows


@pytest.fixture(scope="module")
def reference_with_input(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    rows = _reference(tmp_path_factory.mktemp("pipes-in"), read_stdin=True)
    assert_hostile_content(rows)
    got = [r for r in rows if r["Message"] == "read from stdin"]
    assert len(got) == 1 and got[0]["Properties"]["input"] == INPUT
    return rows


@pytest.fixture
def label() -> Iterator[list[str]]:
    """A label of this test's own; its containers are removed afterwards."""
    value = uuid.uuid4().hex[:12]
    yield ["--label", f"hal-logging-hostile={value}"]
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=hal-logging-hostile={value}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def _docker_argv(kit: Any, label: Sequence[str], **kw: Any) -> list[str]:
    env = {"OPENAI_API_KEY": SECRET}
    env.update(kw.pop("env", {}))
    return kit.python_argv(HOSTILE, env=env, extra=list(label), **kw)


def test_wrap_docker_run_without_a_terminal(
    docker_kit: Any, tmp_path: Path, reference: list[dict[str, Any]], label: list[str]
) -> None:
    argv = _docker_argv(docker_kit, label, rm=True, env={"HAL_RUN_ID": RUN, "HAL_TASK_ID": TASK})
    res = run_forward([*CONTEXT_FLAGS, "--", *argv], tmp_path)
    assert res.returncode == 3, res.stderr
    rows = db_rows(tmp_path / "hal-logs.db")
    assert_same_rows(rows, reference)
    assert streams(rows) == streams(reference)  # stdout and stderr stay apart
    assert final_status(rows) == 3


def test_wrap_docker_run_with_a_terminal(
    docker_kit: Any, tmp_path: Path, reference: list[dict[str, Any]], label: list[str]
) -> None:
    # No HAL_* variables inside: the container alone must make configure() write wire lines.
    argv = _docker_argv(docker_kit, label, rm=True, tty=True)
    res = run_forward([*CONTEXT_FLAGS, "--", *argv], tmp_path)
    assert res.returncode == 3, res.stderr
    rows = db_rows(tmp_path / "hal-logs.db")
    assert_same_rows(rows, reference)
    assert {s for _, s in streams(rows)} == {"unknown"}  # one terminal: streams merged
    assert final_status(rows) == 3


def _run_on_a_terminal(argv: list[str], cwd: Path, db: Path) -> subprocess.Popen[str]:
    """The forwarder with a pseudo-terminal as stdin (``docker run -it`` demands one);
    types INPUT once the program waits for it."""
    leader, follower = pty.openpty()
    from .forward_helpers import clean_env, forward_cmd

    proc = subprocess.Popen(
        forward_cmd(*CONTEXT_FLAGS, "--", *argv),
        cwd=cwd,
        env=clean_env(),
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    try:
        wait_for(
            lambda: "waiting for input" in [r["Message"] for r in db_rows(db)],
            timeout=60,
            what="the program to wait for input",
        )
        os.write(leader, (INPUT + "\n").encode())
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        os.close(leader)
    return proc


def test_wrap_docker_run_interactive_terminal_with_an_echo(
    docker_kit: Any,
    tmp_path: Path,
    reference_with_input: list[dict[str, Any]],
    label: list[str],
) -> None:
    argv = _docker_argv(
        docker_kit,
        label,
        rm=True,
        tty=True,
        interactive=True,
        env={"HAL_RUN_ID": RUN, "HAL_TASK_ID": TASK, "HOSTILE_READ_STDIN": "1"},
    )
    db = tmp_path / "hal-logs.db"
    proc = _run_on_a_terminal(argv, tmp_path, db)
    assert proc.returncode == 3
    rows = db_rows(db)
    # The terminal echoes the typed line back: one more row, plain text, nothing else changed.
    echo = [r for r in rows if r["Message"] == INPUT]
    assert len(echo) == 1 and echo[0]["LoggerName"] == schema.LOGGER_MERGED
    assert echo[0]["Properties"]["hal"]["format"] == "text"
    assert_same_rows([r for r in rows if r is not echo[0]], reference_with_input)
    assert {s for _, s in streams(rows)} == {"unknown"}
    assert final_status(rows) == 3


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "terminal"])
def test_json_file_log_shipped_as_a_file(
    docker_kit: Any, tmp_path: Path, reference: list[dict[str, Any]], label: list[str], tty: bool
) -> None:
    name = f"hal-hostile-{uuid.uuid4().hex[:10]}"
    argv = _docker_argv(
        docker_kit, label, name=name, tty=tty, env={"HAL_RUN_ID": RUN, "HAL_TASK_ID": TASK}
    )
    done = subprocess.run(argv, capture_output=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    log = docker_kit.inspect(name, "{{.LogPath}}")
    assert log.endswith("-json.log")
    res = run_forward(
        [*CONTEXT_FLAGS, "--checkpoint", str(tmp_path / "cp"), log],
        tmp_path,
        env={"OPENAI_API_KEY": SECRET},  # the VM knows the secret it gave the container
    )
    assert res.returncode == 0, res.stderr
    rows = db_rows(tmp_path / "hal-logs.db")
    assert_same_rows(rows, reference)
    if tty:  # docker's log calls a terminal's one stream "stdout"
        assert {s for _, s in streams(rows)} == {"stdout"}
    else:
        assert streams(rows) == streams(reference)  # docker's log keeps the streams apart
    assert {r["Properties"]["hal"]["format"].split("+")[0] for r in rows} == {"docker-json"}
