"""Helpers for the parsing tests: run bytes through Framer + Parser, check rows."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hal_logging import _json, schema
from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.parsing import Parser

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def run(
    data: bytes,
    *,
    chunks: Iterable[int] | None = None,
    stream: str = "stdout",
    source: str = "test-source",
    trusted: Mapping[str, str] | None = None,
    input_format: str = "auto",
    max_line_bytes: int = schema.MAX_FIELD_BYTES * 2,
    now: float = NOW,
) -> list[Record]:
    """Frame and parse ``data`` (cut into ``chunks`` sizes, cycled), then finish."""
    framer = Framer(stream, max_line_bytes=max_line_bytes)
    parser = Parser(
        stream=stream, source=source, trusted=dict(trusted or {}), input_format=input_format
    )
    records: list[Record] = []
    sizes = list(chunks or [len(data) or 1])
    pos = i = 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)])
        for line in framer.feed(data[pos : pos + size], now):
            records.extend(parser.feed(line))
        pos += size
        i += 1
    for line in framer.finish(now):
        records.extend(parser.feed(line))
    records.extend(parser.finish())
    return records


def check_row(row: dict[str, Any]) -> None:
    """The invariants every produced row must satisfy (docs/contract.md §1)."""
    assert list(row) == list(schema.COLUMN_NAMES), list(row)
    assert row["Level"] in schema.LEVELS
    for col in schema.STRING_COLUMNS:
        assert isinstance(row[col], str), col
        assert len(row[col].encode("utf-8")) <= schema.MAX_FIELD_BYTES, col
    tg = row["TimeGenerated"]
    assert isinstance(tg, str) and len(tg) == 27 and tg.endswith("Z") and tg[10] == "T", tg
    props = row["Properties"]
    assert isinstance(props, dict)
    assert len(_json.dumps(props)) <= schema.MAX_FIELD_BYTES
    hal = props["hal"]
    for key in ("stream", "record_id", "format", "offset"):
        assert key in hal, key
    assert hal["stream"] in schema.STREAMS
    # Serialisable as strict JSON, and back.
    assert _json.loads(_json.dumps(row)) == row


def messages(records: list[Record]) -> list[str]:
    return [r.row["Message"] for r in records]


def python_interpreters() -> dict[str, str]:
    """Real CPython interpreters available here: this one plus pyenv/PATH 3.8-3.13."""
    found = {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in range(8, 14):
        version = f"3.{minor}"
        if version in found:
            continue
        candidates = sorted(root.glob(f"{version}.*/bin/python{version}")) if root.is_dir() else []
        for cand in candidates:
            if os.access(cand, os.X_OK):
                found[version] = str(cand)
                break
    return {v: found[v] for v in sorted(found, key=lambda v: int(v.split(".")[1]))}


def interpreter_output(
    python: str, code: str, *args: str, extra_env: Mapping[str, str] | None = None
) -> bytes:
    """Merged stdout+stderr of ``python script.py`` (unbuffered, no colours).

    The code runs from a real file so tracebacks show source lines and carets.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "PYTHONUNBUFFERED": "1",
        "PYTHON_COLORS": "0",
        "NO_COLOR": "1",
        "TERM": "dumb",
        **(extra_env or {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "agent.py"
        script.write_text(code)
        proc = subprocess.run(
            [python, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=60,
            check=False,
        )
    return proc.stdout


def structlog_printing(*processors: Any) -> tuple[Any, io.StringIO]:
    """A structlog logger that adds the level, then runs ``processors``, printing into
    the buffer returned with it."""
    import structlog

    buf = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(buf),
        processors=[structlog.processors.add_log_level, *processors],
    )
    return logger, buf
