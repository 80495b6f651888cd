"""Properties over random input: never raise, valid rows, every byte accounted,
chunking-independent; and the round trip from the container's formatter."""

from __future__ import annotations

import logging
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.formatter import JsonFormatter
from hal_logging.pipeline.model import Record
from hal_logging.pipeline.parsing.terminal import clean, strip_escapes

from .parsing_helpers import NOW, check_row, run


def invisible(gap: bytes) -> bool:
    """Nothing visible in these bytes (what the parser may skip without a row)."""
    return all(not clean(part).strip() for part in re.split(rb"[\r\n]", gap))


FRAGMENTS = [
    b"\n",
    b"\r",
    b"\r\n",
    b"\x1b[31m",
    b"\x1b]8;;x\x07",
    b"\xff\xfe",
    b"\x00",
    b" ",
    b"{",
    b"}",
    b"hello",
    b"ERROR:a:b",
    b"[WARN] x",
    b"2024-05-01 10:00:00,1 - n - INFO - m",
    b"2024-05-01T12:00:00.123456789Z ",
    b'{"log":"x\\n","stream":"stderr","time":"2024-05-01T12:00:00Z"}',
    b'{"log":"part","stream":"stdout","time":"2024-05-01T12:00:00Z"}',
    b'{"_hal":1,"Level":"ERROR","Message":"w","Properties":{"a":[1]}}',
    b'{"_hal":1,"Level":7,"Message":null,"Properties":"x","RunID":{"a":1}}',
    b'{"event":"e","level":"warn"}',
    b'{"msg":1,"ts":"bad"}',
    b"Traceback (most recent call last):",
    b'  File "x.py", line 1, in f',
    b"    ~~^^",
    b"ValueError: v",
    b"KeyError",
    b"During handling of the above exception, another exception occurred:",
    b"  + Exception Group Traceback (most recent call last):",
    b"  | ValueError: a",
    b"  +------",
]


def accounted(records: list[Record], data: bytes) -> None:
    """Records are in order and contiguous; gaps hold only blank lines."""
    pos = 0
    for rec in records:
        assert rec.start >= pos and rec.end > rec.start
        assert invisible(data[pos : rec.start]), data[pos : rec.start]
        pos = rec.end
    assert invisible(data[pos:]), data[pos:]


def comparable(records: list[Record]) -> list[tuple[Any, ...]]:
    return [(r.start, r.end, r.stream, _json.dumps(r.row)) for r in records]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), min_size=1, max_size=5))
def test_random_bytes_never_raise(data: bytes, sizes: list[int]) -> None:
    records = run(data, chunks=sizes, input_format="raw")
    for rec in records:
        check_row(rec.row)
    accounted(records, data)
    assert comparable(records) == comparable(run(data, input_format="raw"))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=8), max_size=40),
    st.lists(st.integers(1, 200), min_size=1, max_size=4),
    st.sampled_from(["auto", "raw", "docker-json", "docker-timestamps"]),
    st.sampled_from(["stdout", "stderr", "unknown"]),
)
def test_structured_fuzz(parts: list[bytes], sizes: list[int], fmt: str, stream: str) -> None:
    data = b"".join(parts)
    records = run(data, chunks=sizes, input_format=fmt, stream=stream, trusted={"RunID": "r"})
    for rec in records:
        check_row(rec.row)
        assert rec.row["RunID"] == "r"
        assert 0 <= rec.start < rec.end <= len(data)
    if fmt == "raw":
        accounted(records, data)
    assert comparable(records) == comparable(
        run(data, input_format=fmt, stream=stream, trusted={"RunID": "r"})
    )


def test_fifty_megabyte_line_through_the_parser() -> None:
    data = b"start\n" + b"z" * (50 << 20) + b"\nend\n"
    records = run(data, chunks=[1 << 20])
    _start, big, end = records
    for rec in records:
        check_row(rec.row)
    assert big.row["Message"].endswith(schema.TRUNCATION_MARKER)
    assert big.row["Properties"]["hal"]["original_length"]["Message"] == 50 << 20
    assert (big.start, big.end) == (6, 6 + (50 << 20) + 1)
    assert end.row["Message"] == "end"


def test_long_strings_in_properties_are_cut() -> None:
    row = {schema.WIRE_VERSION_KEY: 1, **dict.fromkeys(schema.COLUMN_NAMES, "")}
    row.update(Message="m" * 70_000, LoggerName="l" * 70_000, Level="INFO")
    row["Properties"] = {
        "big": "é" * 40_000,
        "nested": {"list": ["x" * 70_000, 1]},
        "many": ["y" * 1000] * 80,
    }
    [rec] = run(_json.dumps(row) + b"\n")
    check_row(rec.row)
    lengths = rec.row["Properties"]["hal"]["original_length"]
    assert lengths["Message"] == 70_000 and lengths["LoggerName"] == 70_000
    assert lengths["Properties.nested.list[0]"] == 70_000
    assert rec.row["Properties"]["nested"]["list"][1] == 1
    assert len(_json.dumps(rec.row["Properties"])) <= schema.MAX_FIELD_BYTES


def test_too_many_keys_in_properties_are_kept_as_text() -> None:
    row = {schema.WIRE_VERSION_KEY: 1, **dict.fromkeys(schema.COLUMN_NAMES, ""), "Level": "INFO"}
    row["Properties"] = {f"k{i}": i for i in range(20_000)}
    [rec] = run(_json.dumps(row) + b"\n")
    check_row(rec.row)
    props = rec.row["Properties"]
    assert props["truncated"].startswith('{"k0":0,"k1":1')
    assert props["hal"]["original_length"]["Properties"] > schema.MAX_FIELD_BYTES


# -- round trip through the container's formatter -------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_extra_keys = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda k: (
        k not in logging.LogRecord("x", 10, "x", 1, "x", None, None).__dict__
        and k not in ("message", "asctime", "taskName", "hal", "src")
        and not k.startswith("_")
    )
)


@settings(max_examples=200, deadline=None)
@given(
    message=_text,
    level=st.sampled_from(
        [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL, 25, 5]
    ),
    name=st.text("abcdefghij._", min_size=1, max_size=20),
    extra=st.dictionaries(_extra_keys, _json_values, max_size=5),
    context=st.fixed_dictionaries({"RunID": _text, "TaskID": _text}),
)
def test_formatter_round_trip(
    message: str, level: int, name: str, extra: dict[str, Any], context: dict[str, str]
) -> None:
    formatter = JsonFormatter(context=context)
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    line = formatter.format(record).encode()
    assert line.startswith(schema.WIRE_PREFIX)
    logged = _json.loads(line)
    del logged[schema.WIRE_VERSION_KEY]
    [rec] = run(line + b"\n", chunks=[7, 1000])
    check_row(rec.row)
    hal = rec.row["Properties"].pop("hal")
    # Dropping NUL is noted (the only note a line from the formatter can get).
    expected = ["NUL characters removed from Message"] if "\x00" in message else None
    assert hal["format"] == "wire" and hal.get("problems") == expected and "claimed" not in hal
    # NUL and terminal escapes are removed from Messages (as in text lines)
    logged["Message"] = strip_escapes(logged["Message"].replace("\x00", ""))
    assert rec.row == logged
    assert rec.row["Message"] == strip_escapes(message.replace("\x00", ""))
    assert rec.row["Properties"].get("src", "").endswith(":1")
    for key, value in extra.items():
        assert _json.loads(_json.dumps(value)) == rec.row["Properties"][key]


def test_formatter_round_trip_with_exception_and_trust() -> None:
    formatter = JsonFormatter(context={"RunID": "claimed", "TaskID": "t"})
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "agent", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = formatter.format(record).encode()
    [rec] = run(line + b"\n", trusted={"RunID": "real"}, now=NOW)
    assert rec.row["RunID"] == "real" and rec.row["TaskID"] == "t"
    assert rec.row["Properties"]["hal"]["claimed"] == {"RunID": "claimed"}
    exc = rec.row["Properties"]["exception"]
    assert (exc["type"], exc["message"]) == ("ValueError", "boom")
    assert rec.row["Message"] == "failed x"


def test_huge_claims_and_unknown_keys_stay_within_limits() -> None:
    row = {schema.WIRE_VERSION_KEY: 1, **dict.fromkeys(schema.COLUMN_NAMES, ""), "Level": "INFO"}
    row["RunID"] = "r" * 60_000
    row["Properties"] = {"hal": {"forged": "h" * 60_000}}
    row.update({f"unknown{i}": i for i in range(3000)})
    [rec] = run(_json.dumps(row) + b"\n", trusted={"RunID": "real"})
    check_row(rec.row)
    hal = rec.row["Properties"]["hal"]
    assert rec.row["RunID"] == "real"
    assert hal["claimed"]["RunID"].startswith("rrrr")
    assert hal["claimed"]["RunID"].endswith(schema.TRUNCATION_MARKER)
    assert hal["problems"][-1] == "... and 2990 more"


CONTAINER = r"""
import logging, warnings
import hal_logging
from hal_logging import bind

hal_logging.configure(format="json")
log = logging.getLogger("agent.loop")
log.info("hello %s", "world", extra={"tokens": [1, 2], "cost": 0.5})
print("a plain print")
with bind(step=7):
    try:
        {}["missing"]
    except KeyError:
        log.exception("step failed")
warnings.warn("old api", DeprecationWarning, stacklevel=1)
log.warning("multi\nline\tmessage \u00e9")
raise SystemExit(0)
"""


def test_real_configure_output_round_trip() -> None:
    import os
    import subprocess
    import sys

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HAL_RUN_ID": "container-claims-this",
        "HAL_TASK_ID": "task-7",
        "PYTHONWARNINGS": "always",
    }
    proc = subprocess.run(
        [sys.executable, "-c", CONTAINER], capture_output=True, env=env, timeout=60, check=True
    )
    out = proc.stdout
    assert out.count(schema.WIRE_PREFIX) >= 3, out
    records = run(out, trusted={"RunID": "run-real"})
    for rec in records:
        check_row(rec.row)
    by_message = {r.row["Message"]: r.row for r in records}
    hello = by_message["hello world"]
    assert hello["Properties"]["tokens"] == [1, 2] and hello["Properties"]["cost"] == 0.5
    assert hello["LoggerName"] == "agent.loop" and hello["Properties"]["hal"]["format"] == "wire"
    assert hello["RunID"] == "run-real" and hello["TaskID"] == "task-7"
    assert hello["Properties"]["hal"]["claimed"] == {"RunID": "container-claims-this"}
    failed = by_message["step failed"]
    assert failed["Level"] == "ERROR" and failed["Properties"]["step"] == 7
    assert failed["Properties"]["exception"]["type"] == "KeyError"
    assert by_message["multi\nline\tmessage \u00e9"]["Level"] == "WARNING"
    assert by_message["a plain print"]["Properties"]["hal"]["format"] == "text"
    # every line written is accounted for
    assert records[-1].end == len(out)
    assert [r.start for r in records[1:]] == [r.end for r in records[:-1]]
