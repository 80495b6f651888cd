"""The formatter's promise as a property: any message, any extras -> one strict JSON line."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import hal_logging
from hal_logging import BenchmarkLoggerAdapter
from hal_logging.context import CONTEXT_ALIASES
from hal_logging.schema import MAX_FIELD_BYTES, TRUNCATION_MARKER

from .container_helpers import captured, wire_row

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats()  # NaN and infinities included
    | st.text()
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.none() | st.just(dt.timezone.utc))
    | st.decimals(allow_nan=True)
    | st.builds(ValueError, st.text(max_size=10))
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.text(max_size=8) | st.integers() | st.tuples(st.integers()), inner, max_size=4
        )
    ),
    max_leaves=12,
)
extras = st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=6)
long_messages = st.builds(
    lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(5_000, 40_000)
)
messages = st.text() | long_messages


@given(message=messages, fields=extras, bound=extras)
def test_any_message_and_extras_give_one_strict_line(
    message: str, fields: dict[str, Any], bound: dict[str, Any]
) -> None:
    with captured() as cap, hal_logging.bind(**bound):
        BenchmarkLoggerAdapter(cap.logger, {}).info(message, extra=fields)
    text = cap.buffer.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    row = wire_row(text[:-1])  # strict json.loads: NaN/Infinity would fail
    size = len(message.encode("utf-8"))
    if size <= MAX_FIELD_BYTES:
        assert row["Message"] == message
    else:
        cut = row["Message"]
        assert cut.endswith(TRUNCATION_MARKER)
        assert message.startswith(cut[: -len(TRUNCATION_MARKER)])
        assert len(cut.encode("utf-8")) <= MAX_FIELD_BYTES
        assert row["Properties"]["original_length"]["Message"] == size


@given(fields=extras)
def test_plain_json_extras_arrive_unchanged(fields: dict[str, Any]) -> None:
    """Values that are already JSON come back exactly (no needless stand-ins)."""
    plain = {
        k: v
        for k, v in fields.items()
        if isinstance(v, (str, bool, type(None))) or (isinstance(v, int) and abs(v) < 2**63)
    }
    with captured() as cap:
        BenchmarkLoggerAdapter(cap.logger, {}).info("m", extra=plain)
    props = cap.one()["Properties"]
    for key, value in plain.items():
        if key in CONTEXT_ALIASES:  # context names set columns instead
            continue
        assert props[key] == value


def test_decimal_nan_and_huge_ints_are_not_lost() -> None:
    with captured() as cap:
        cap.logger.info("m", extra={"d": decimal.Decimal("NaN"), "i": -(2**80)})
    props = cap.one()["Properties"]
    assert props["d"] == "NaN" and props["i"] == str(-(2**80))
