"""Helpers for the forwarder tests (issue 4): real subprocesses, real SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hal_logging import _json, schema

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
P = TypeVar("P", bound="subprocess.Popen[Any]")

_STRIP_ENV = (
    *(c.env for c in schema.CONTEXT_COLUMNS if c.env),
    "HAL_LOGGING_DB",
    "HAL_LOGGING_REDACT_ENV",
    "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT",
    "AZURE_MONITOR_DATA_COLLECTION_RULE_ID",
    "AZURE_MONITOR_STREAM_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without run context or output settings."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def forward_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hal_logging.cli.forward", *args]


def run_forward(
    args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        forward_cmd(*args),
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_forward(
    args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        forward_cmd(*args),
        cwd=cwd,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_cmd(*args: str) -> list[str]:
    """The ``hal-logging`` command (its main entry point) with ``args``."""
    return [sys.executable, "-m", "hal_logging.cli.main", *args]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``hal-logging ARGS`` run to its end in a clean environment, its output captured."""
    return subprocess.run(
        cli_cmd(*args), capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=cwd
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``hal-logging ARGS`` started in a clean environment, its output piped."""
    return subprocess.Popen(
        cli_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )


@contextlib.contextmanager
def reaped(proc: P) -> Iterator[P]:
    """Runs the block; on the way out a ``proc`` still running is killed and reaped."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def row_fields(r: dict[str, Any]) -> tuple[Any, ...]:
    """A stored row's time, level, message, logger, stream, run and task: what two
    deliveries of the same line must agree on."""
    return (
        r["TimeGenerated"],
        r["Level"],
        r["Message"],
        r["LoggerName"],
        r["Properties"]["hal"]["stream"],
        r["RunID"],
        r["TaskID"],
    )


def write_signal_catcher(path: Path, sig: signal.Signals, status: int) -> Path:
    """A script at ``path`` that prints "ready" and waits; on ``sig`` it prints
    "got SIGNAME" and exits with ``status``."""
    path.write_text(
        textwrap.dedent(f"""
        import signal, sys, time
        def bye(signum, frame):
            print("got {sig.name}", flush=True)
            sys.exit({status})
        signal.signal(signal.{sig.name}, bye)
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """)
    )
    return path


def agent_row(
    time: str, level: str, msg: str, logger: str, run: str, task: str, **more: Any
) -> dict[str, Any]:
    """A full schema row of an agent's line (LogType AgentLog unless ``more`` says
    otherwise); ``more`` sets any other column."""
    row: dict[str, Any] = schema.empty_row()
    row.update(
        {
            "TimeGenerated": time,
            "Level": level,
            "Message": msg,
            "LoggerName": logger,
            "RunID": run,
            "TaskID": task,
            "LogType": "AgentLog",
            **more,
        }
    )
    return row


def wire_line(
    i: int,
    *,
    level: str = "INFO",
    logger: str = "agent",
    run: str = "",
    task: str = "",
    msg: str | None = None,
) -> bytes:
    """A wire line (docs/contract.md §2) with a fixed, distinct TimeGenerated."""
    sec, us = divmod(i, 1_000_000)
    row = agent_row(
        f"2024-05-01T00:{(sec // 60) % 60:02d}:{sec % 60:02d}.{us:06d}Z",
        level,
        msg if msg is not None else f"step {i} done",
        logger,
        run,
        task,
        Properties={"i": i, "tokens": i * 7 % 1000},
    )
    return schema.WIRE_PREFIX + _json.dumps(row)[1:]


def write_mixed_file(path: Path, n: int) -> None:
    """``n`` lines: mostly wire lines, some plain text, and a traceback every 997 lines."""
    parts: list[bytes] = []
    i = 0
    while i < n:
        if i % 997 == 500:
            parts.append(b"Traceback (most recent call last):")
            parts.append(b'  File "agent.py", line 3, in <module>')
            parts.append(b"ValueError: bad value %d" % i)
            i += 3
            continue
        if i % 101 == 50:
            parts.append(b"plain print output %d" % i)
        else:
            parts.append(wire_line(i, level="WARNING" if i % 13 == 0 else "INFO"))
        i += 1
    path.write_bytes(b"\n".join(parts) + b"\n")


def db_rows(db: Path, where: str = "1", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            f'SELECT * FROM "{schema.TABLE_NAME}" WHERE {where} ORDER BY rowid', list(params)
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    out = []
    for r in rows:
        d = dict(r)
        d["Properties"] = _json.loads(d["Properties"])
        out.append(d)
    return out


def db_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(f'SELECT count(*) FROM "{schema.TABLE_NAME}"').fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def messages(db: Path) -> list[str]:
    return [r["Message"] for r in db_rows(db)]
