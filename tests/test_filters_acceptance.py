"""Acceptance (issue 7): a container prints its API key everywhere; the key reaches no sink.

The real forwarder (``python -m hal_logging.cli.forward``) runs as a
subprocess in each mode (files, --follow, wrap) and with each sink (jsonl,
the SQLite workspace, OTLP to a local receiver). The "container" prints the
key in plain text, inside JSON values, in a traceback (raw on stderr and as a
wire row from ``hal_logging.configure()``), in a URL and in a bearer header.
Afterwards no file the forwarder wrote (rows, workspace, checkpoints, dead
letters) and no OTLP payload contains the key, and every row is there with
its marker.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.otlp_helpers import otlp_receiver

KEY = "sk-proj-" + "R4nd0mL00king" + "Key" * 6 + "xyz"
PLAIN_KEY = "correct-horse-battery-staple-42"  # no known shape: only its value betrays it

CONTAINER = textwrap.dedent(
    """
    import json, logging, sys, traceback
    args = sys.argv[1:]
    key = args[args.index("-e") + 1].split("=", 1)[1]
    print(f"plain text: using key {key}", flush=True)
    print(json.dumps({"event": "config", "client": {"api_key": key, "note": f"k={key}"}}), flush=True)
    print(f"GET https://agent:{key}@api.example.com/v1/models", flush=True)
    print(f"request headers: Authorization: Bearer {key}", flush=True)
    try:
        raise PermissionError(f"401 for key {key}")
    except PermissionError:
        traceback.print_exc()
    sys.stderr.flush()
    import hal_logging
    hal_logging.configure()
    log = logging.getLogger("agent.llm")
    log.info("calling model", extra={"auth": {"header": f"Bearer {key}"}, "keys": [key]})
    try:
        raise RuntimeError(f"auth failed with {key}")
    except RuntimeError:
        log.exception("call failed for %s", key)
    print("done", flush=True)
    """
)
EXPECTED = (
    "plain text: using key [REDACTED:",
    "GET https://agent:[REDACTED:",
    "request headers: Authorization: Bearer [REDACTED:",
    "calling model",
    "done",
)


def forwarder_env(tmp: Path, with_key: str | None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "HAL_LOGGING_REDACT_ENV")
    }
    env.update(HAL_RUN_ID="run-1", HAL_TASK_ID="task-1", PYTHONUNBUFFERED="1")
    if with_key:
        env["OPENAI_API_KEY"] = with_key
    return env


def sink_args(sink: str, tmp: Path, otlp_url: str) -> list[str]:
    if sink == "jsonl":
        return ["--sink", "jsonl", "--output", str(tmp / "rows.jsonl")]
    if sink == "sqlite":
        return ["--sink", "sqlite", "--db", str(tmp / "ws.db")]
    return ["--sink", "otlp", "--otlp-endpoint", otlp_url]


def sink_texts(sink: str, tmp: Path, received: list[dict[str, Any]]) -> list[str]:
    """Every row's Message (or OTLP body), for the checks that rows arrived."""
    if sink == "jsonl":
        import orjson

        return [
            orjson.loads(line)["Message"] for line in (tmp / "rows.jsonl").read_bytes().splitlines()
        ]
    if sink == "sqlite":
        with sqlite3.connect(tmp / "ws.db") as db:
            return [m for (m,) in db.execute('SELECT Message FROM "BenchmarkRuns_CL"')]
    return [r["body"] for r in received]


def run_mode(
    mode: str, sink: str, tmp: Path, otlp_url: str, key: str, forwarder_knows: bool
) -> None:
    script = tmp / "container.py"
    script.write_text(CONTAINER)
    container = [sys.executable, str(script), "-e", f"OPENAI_API_KEY={key}"]
    out = tmp / "input" / "container.log"
    out.parent.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "hal_logging.cli.forward",
        "--quiet",
        *sink_args(sink, tmp, otlp_url),
    ]
    cmd += ["--checkpoint", str(tmp / "state" / "ckpt"), "--multiline-timeout", "0.2"]
    (tmp / "state").mkdir()
    env = forwarder_env(tmp, key if forwarder_knows else None)
    container_env = {**env, "OPENAI_API_KEY": ""}
    if mode == "files":
        with out.open("wb") as f:
            subprocess.run(
                container,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=container_env,
                check=True,
                timeout=60,
            )
        proc = subprocess.run([*cmd, str(out)], env=env, capture_output=True, timeout=60)
    elif mode == "follow":
        with out.open("wb") as f:
            child = subprocess.Popen(
                container, stdout=f, stderr=subprocess.STDOUT, env=container_env
            )
            follower = subprocess.Popen(
                [*cmd, "--follow", "--until-pid", str(child.pid), str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            child.wait(timeout=60)  # reaped, so --until-pid sees it gone
            stdout, stderr = follower.communicate(timeout=60)
            proc = subprocess.CompletedProcess(follower.args, follower.returncode, stdout, stderr)
    else:
        proc = subprocess.run([*cmd, "--", *container], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


def assert_no_key_anywhere(tmp: Path, received: list[dict[str, Any]], key: str) -> None:
    needle = key.encode()
    for path in tmp.rglob("*"):
        if path.is_file() and path.parent.name != "input" and path.name != "container.py":
            assert needle not in path.read_bytes(), f"the key leaked into {path}"
    assert key not in repr(received)


@pytest.mark.parametrize("sink", ["jsonl", "sqlite", "otlp"])
@pytest.mark.parametrize("mode", ["files", "follow", "wrap"])
def test_api_key_reaches_no_sink_in_any_mode(mode: str, sink: str, tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        # files/follow: the VM passed the key to docker from its own environment;
        # wrap: the forwarder only sees it in the command's -e flag.
        run_mode(mode, sink, tmp_path, receiver.url, KEY, forwarder_knows=mode != "wrap")
        received = list(receiver.records)
    assert_no_key_anywhere(tmp_path, received, KEY)
    texts = sink_texts(sink, tmp_path, received)
    joined = "\n".join(texts)
    for expected in EXPECTED:
        assert expected in joined, (expected, texts)
    assert "[REDACTED:env:OPENAI_API_KEY]" in joined
    assert "call failed for [REDACTED:env:OPENAI_API_KEY]" in joined
    if sink == "sqlite":
        with sqlite3.connect(tmp_path / "ws.db") as db:
            props = "\n".join(p for (p,) in db.execute('SELECT Properties FROM "BenchmarkRuns_CL"'))
        assert (
            '"stacktrace"' in props
            and "RuntimeError: auth failed with [REDACTED:env:OPENAI_API_KEY]" in props
        )
        assert "PermissionError: 401 for key [REDACTED:env:OPENAI_API_KEY]" in joined + props


def test_shapes_alone_protect_a_key_the_forwarder_was_not_told_about(tmp_path: Path) -> None:
    run_mode("files", "jsonl", tmp_path, "", KEY, forwarder_knows=False)
    assert_no_key_anywhere(tmp_path, [], KEY)
    joined = "\n".join(sink_texts("jsonl", tmp_path, []))
    assert "plain text: using key [REDACTED:openai_key]" in joined
    assert "Bearer [REDACTED:" in joined


def test_a_key_without_known_shape_is_caught_through_the_command_env(tmp_path: Path) -> None:
    run_mode("wrap", "jsonl", tmp_path, "", PLAIN_KEY, forwarder_knows=False)
    assert_no_key_anywhere(tmp_path, [], PLAIN_KEY)
    joined = "\n".join(sink_texts("jsonl", tmp_path, []))
    assert "plain text: using key [REDACTED:env:OPENAI_API_KEY]" in joined
