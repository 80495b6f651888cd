"""Shared machinery of the proof suites (issue 8): run the real forwarder, read what
arrived, and check it against the contract.

The proof suites never import the forwarder's internals to decide what happened:
they run ``python -m hal_logging.cli.forward`` as a subprocess, read the sink's
output the way a user would (JSON lines, the SQLite workspace, the emulator's
store), and check every row against docs/contract.md §1 with :func:`row_problems`. That
way a bug anywhere between the bytes and the destination shows up here.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from hal_logging import schema

REPO = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO / "tests" / "fixtures" / "bad_inputs"
TRUSTED: dict[str, str] = {"RunID": "trusted-run", "TaskID": "trusted-task"}
TRUST_ARGS: list[str] = ["--run-id", TRUSTED["RunID"], "--task-id", TRUSTED["TaskID"]]
FORWARD: list[str] = [sys.executable, "-m", "hal_logging.cli.forward"]

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|\+00:00)$")
_OWN_TRACEBACK = "Traceback (most recent call last)"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Running things
# ---------------------------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """The environment for a forwarder subprocess: the test's (loopback-guarded) env, no tty."""
    env = dict(os.environ)
    env.pop("HAL_LOGGING_DB", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def forward(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """Run the real forwarder CLI to completion; never raises on a non-zero exit."""
    return subprocess.run(
        [*FORWARD, *args],
        cwd=cwd,
        env=dict(env) if env is not None else base_env(),
        stdin=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


def start_forward(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, stderr_path: Path
) -> subprocess.Popen[bytes]:
    """Start the forwarder in the background, stderr to a file (read it with :func:`text_of`)."""
    with stderr_path.open("wb") as err:
        return subprocess.Popen(
            [*FORWARD, *args],
            cwd=cwd,
            env=dict(env) if env is not None else base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace") if path.exists() else ""




def tool_tracebacks(stderr: str) -> list[str]:
    """Python tracebacks the tool itself printed (the input never reaches stderr)."""
    return [line for line in stderr.splitlines() if _OWN_TRACEBACK in line]


def assert_clean_exit(proc: subprocess.CompletedProcess[str], expected: int, what: str) -> None:
    assert not tool_tracebacks(proc.stderr), (
        f"{what}: the tool printed a traceback:\n{proc.stderr[-4000:]}"
    )
    assert proc.returncode == expected, (
        f"{what}: exit {proc.returncode}, expected {expected}\nstderr:\n{proc.stderr[-4000:]}"
    )


# ---------------------------------------------------------------------------------------------
# Reading what arrived
# ---------------------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name} in output (NaN/Infinity are not JSON)")


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity: what Azure and KQL accept."""
    return json.loads(text, parse_constant=_no_constants)


def jsonl_rows(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes() if path.exists() else b""
    return [strict_loads(line) for line in data.split(b"\n") if line.strip()]


def db_rows(db: Path, table: str = schema.TABLE_NAME, where: str = "") -> list[dict[str, Any]]:
    """Rows of a local workspace (or the emulator's store), Properties parsed, in rowid order."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        con.row_factory = sqlite3.Row
        cols = ", ".join(f'"{c}"' for c in schema.COLUMN_NAMES)
        try:
            cur = con.execute(f'SELECT {cols} FROM "{table}" {where} ORDER BY rowid')
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        out = []
        for r in cur:
            row = {c: r[c] for c in schema.COLUMN_NAMES}
            row["Properties"] = strict_loads(row["Properties"]) if row["Properties"] else {}
            out.append(row)
        return out
    finally:
        con.close()


def hal(row: Mapping[str, Any]) -> dict[str, Any]:
    props = row.get("Properties")
    if isinstance(props, dict) and isinstance(props.get(schema.PROP_HAL), dict):
        return props[schema.PROP_HAL]
    return {}


def record_id(row: Mapping[str, Any]) -> str:
    return str(hal(row).get(schema.HAL_RECORD_ID, ""))


# ---------------------------------------------------------------------------------------------
# The contract, row by row
# ---------------------------------------------------------------------------------------------


def _utf8_len(value: str) -> int | None:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _walk_strings(obj: Any, path: str = "Properties") -> Iterable[tuple[str, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{path}.{k}[key]", str(k)
            yield from _walk_strings(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for j, v in enumerate(obj):
            yield from _walk_strings(v, f"{path}[{j}]")


def row_problems(row: Mapping[str, Any], trusted: Mapping[str, str] = TRUSTED) -> list[str]:
    """Everything wrong with one row, as readable sentences (empty = the row obeys docs/contract.md §1)."""
    problems: list[str] = []
    keys = set(row)
    if keys != schema.COLUMN_SET:
        problems.append(f"columns {sorted(keys ^ schema.COLUMN_SET)} missing or extra")
    for col in schema.STRING_COLUMNS:
        value = row.get(col)
        if not isinstance(value, str):
            problems.append(f"{col} is {type(value).__name__}, not a string")
            continue
        size = _utf8_len(value)
        if size is None:
            problems.append(f"{col} is not valid UTF-8 (lone surrogate)")
        elif size > schema.MAX_FIELD_BYTES:
            problems.append(f"{col} is {size} bytes, over the 64 KB field limit")
    if row.get("Level") not in schema.LEVELS:
        problems.append(f"Level {row.get('Level')!r} is not one of {schema.LEVELS}")
    tg = row.get("TimeGenerated")
    if not isinstance(tg, str) or not _TIME_RE.match(tg):
        problems.append(f"TimeGenerated {tg!r} is not ISO 8601 UTC with microseconds")
    else:
        try:
            datetime.fromisoformat(tg.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"TimeGenerated {tg!r} is not a real time")
    msg = row.get("Message")
    if isinstance(msg, str):
        for bad, name in (("\x00", "NUL"), ("\x1b", "ESC")):
            if bad in msg:
                problems.append(f"Message contains {name}")
    for col, value in trusted.items():
        if row.get(col) != value:
            problems.append(f"{col} is {row.get(col)!r}, not the trusted {value!r}")
    props = row.get("Properties")
    if not isinstance(props, dict):
        problems.append(f"Properties is {type(props).__name__}, not an object")
        return problems
    h = props.get(schema.PROP_HAL)
    if not isinstance(h, dict):
        problems.append("Properties.hal missing")
    else:
        if h.get(schema.HAL_STREAM) not in schema.STREAMS:
            problems.append(f"Properties.hal.stream {h.get(schema.HAL_STREAM)!r} invalid")
        rid = h.get(schema.HAL_RECORD_ID)
        if not isinstance(rid, str) or not rid:
            problems.append("Properties.hal.record_id missing")
        if not isinstance(h.get(schema.HAL_FORMAT), str):
            problems.append("Properties.hal.format missing")
    for where, value in _walk_strings(props):
        size = _utf8_len(value)
        if size is None:
            problems.append(f"{where} is not valid UTF-8 (lone surrogate)")
        elif size > schema.MAX_FIELD_BYTES:
            problems.append(f"{where} is {size} bytes, over the 64 KB field limit")
    serialised = json.dumps(props, ensure_ascii=False, separators=(",", ":"))
    size = _utf8_len(serialised) or 0
    if size > schema.MAX_FIELD_BYTES:
        problems.append(
            f"Properties serialises to {size} bytes: Azure cuts the field at 64 KB and the JSON breaks"
        )
    return problems


def rows_problems(
    rows: Sequence[Mapping[str, Any]], trusted: Mapping[str, str] = TRUSTED
) -> list[str]:
    out: list[str] = []
    for j, row in enumerate(rows):
        out.extend(f"row {j}: {p}" for p in row_problems(row, trusted))
    ids = [record_id(r) for r in rows]
    if len(set(ids)) != len(ids):
        out.append(f"{len(ids) - len(set(ids))} rows share a record_id")
    return out


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusCase:
    stem: str
    path: Path
    expect: dict[str, Any]

    @property
    def args(self) -> list[str]:
        return list(self.expect.get("args", []))

    @property
    def input_format(self) -> str:
        args = self.args
        if "--input-format" in args:
            return args[args.index("--input-format") + 1]
        return "auto"


def load_corpus(directory: Path = CORPUS_DIR) -> list[CorpusCase]:
    out = []
    for sidecar in sorted(directory.glob("*.json")):
        out.append(
            CorpusCase(sidecar.stem, sidecar.with_suffix(".log"), json.loads(sidecar.read_text()))
        )
    return out


def _row_with(rows: Sequence[Mapping[str, Any]], marker: str) -> Mapping[str, Any] | None:
    for row in rows:
        if isinstance(row.get("Message"), str) and marker in row["Message"]:
            return row
    return None


def expectation_problems(rows: Sequence[Mapping[str, Any]], expect: Mapping[str, Any]) -> list[str]:
    """Where ``rows`` differ from a corpus sidecar's defined behaviour (see make_bad_inputs.py)."""
    out: list[str] = []
    want = expect["rows"]
    lo, hi = (want, want) if isinstance(want, int) else (want[0], want[1])
    if not lo <= len(rows) <= hi:
        out.append(f"{len(rows)} rows, expected {want}")
    for marker in expect.get("markers", []):
        if _row_with(rows, marker) is None:
            out.append(f"marker {marker!r} is in no Message (lost or mangled)")
    blobs = [json.dumps(r, ensure_ascii=False) for r in rows]
    for marker in expect.get("markers_anywhere", []):
        if not any(marker in b for b in blobs):
            out.append(f"marker {marker!r} is nowhere in the rows (lost)")
    if "messages" in expect:
        got = [r.get("Message") for r in rows]
        if got != expect["messages"]:
            out.append(
                f"messages {[(m or '')[:80] for m in got]} != expected {[m[:80] for m in expect['messages']]}"
            )
    for bad in expect.get("absent", []):
        for j, r in enumerate(rows):
            if isinstance(r.get("Message"), str) and bad in r["Message"]:
                out.append(f"row {j}: Message contains {bad!r}")
    for marker, level in expect.get("levels", {}).items():
        row = _row_with(rows, marker)
        if row is not None and row.get("Level") != level:
            out.append(f"row with {marker!r}: Level {row.get('Level')!r}, expected {level!r}")
    for marker, etype in expect.get("exception", {}).items():
        row = _row_with(rows, marker)
        exc = (row or {}).get("Properties", {}).get(schema.PROP_EXCEPTION) if row else None
        if not isinstance(exc, dict) or exc.get("type") != etype:
            out.append(
                f"row with {marker!r}: Properties.exception {exc!r}, expected type {etype!r}"
            )
    for marker, length in expect.get("truncated", {}).items():
        row = _row_with(rows, marker)
        if row is None:
            continue
        msg = row["Message"]
        if not msg.endswith(schema.TRUNCATION_MARKER):
            out.append(f"row with {marker!r}: Message not cut with the visible marker")
        orig = hal(row).get(schema.HAL_ORIGINAL_LENGTH)
        orig_len = orig.get("Message") if isinstance(orig, dict) else orig
        if orig_len != length:
            out.append(f"row with {marker!r}: original_length {orig!r}, expected Message={length}")
    if expect.get("truncated_any"):
        if not any(
            isinstance(r.get("Message"), str)
            and r["Message"].endswith(schema.TRUNCATION_MARKER)
            and hal(r).get(schema.HAL_ORIGINAL_LENGTH)
            for r in rows
        ):
            out.append("no row was cut with the marker and an original length")
    for col, value in expect.get("claimed", {}).items():
        if not any(
            isinstance(hal(r).get(schema.HAL_CLAIMED), dict)
            and hal(r)[schema.HAL_CLAIMED].get(col) == value
            for r in rows
        ):
            out.append(f"no row keeps the claim {col}={value!r} in Properties.hal.claimed")
    forged = expect.get("forbidden_record_id")
    if forged and any(record_id(r) == forged for r in rows):
        out.append(f"a row carries the forged record_id {forged!r}")
    for marker, stream in expect.get("stream", {}).items():
        row = _row_with(rows, marker)
        if row is not None and hal(row).get(schema.HAL_STREAM) != stream:
            out.append(
                f"row with {marker!r}: stream {hal(row).get(schema.HAL_STREAM)!r}, expected {stream!r}"
            )
    return out
