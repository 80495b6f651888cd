"""Serialising rows once: times outside the service's window kept aside, long fields cut."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.azure import encoding
from hal_logging.azure.encoding import encode_rows, row_encoder
from hal_logging.pipeline import metering
from hal_logging.pipeline.metering import Meter
from hal_logging.pipeline.model import Record


def row(when: Any, message: str = "m") -> dict[str, Any]:
    out = schema.empty_row()
    out.update(TimeGenerated=when, Message=message)
    out["Properties"] = {"hal": {"record_id": "r"}}
    return out


def stamp(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_usual_rows_are_dumped_as_they_are() -> None:
    rows = [row(stamp(timedelta(minutes=-i))) for i in range(5)]
    out: list[bytes] = []
    done = encode_rows(rows, out.append, 1_048_576)
    assert (done.fixed, done.cut) == (0, 0)
    assert [_json.loads(b) for b in out] == rows
    assert row_encoder()(rows) == out  # the batch fast path gives the same bytes
    assert row_encoder()([]) == []


def test_times_out_of_the_window_are_replaced_and_kept() -> None:
    old, ahead = stamp(timedelta(days=-3)), stamp(timedelta(days=2))
    rows = [row(old), row(ahead), row(stamp(timedelta(0))), row(12345), row("2026-13-99 nonsense")]
    out: list[bytes] = []
    done = encode_rows(rows, out.append, 1_048_576)
    assert done.fixed == 4 and done.first_bad == old
    got = [_json.loads(b) for b in out]
    assert [g["Properties"]["hal"].get("original_time") for g in got] == [
        old,
        ahead,
        None,
        "12345",
        "2026-13-99 nonsense",
    ]
    assert all(g["TimeGenerated"] != rows[i]["TimeGenerated"] for i, g in enumerate(got) if i != 2)
    assert rows[0]["TimeGenerated"] == old  # the caller's row is not changed
    # The batch encoder leaves every odd row to encode_rows (None), keeps the usual one.
    each = row_encoder()(rows)
    assert each[:2] == [None, None] and each[2] == out[2] and each[3:] == [None, None]


def test_other_time_forms_inside_the_window_are_kept() -> None:
    now = datetime.now(timezone.utc)
    forms = [
        now.isoformat(),
        now.strftime("%Y-%m-%dT%H:%M:%S.%f123Z"),
        now.strftime("%Y-%m-%dT%H:%M:%S"),
    ]
    out: list[bytes] = []
    assert encode_rows([row(f) for f in forms], out.append, 1_048_576).fixed == 0


def test_a_field_over_the_limit_is_cut() -> None:
    big = row(stamp(timedelta(0)), "x" * (schema.MAX_FIELD_BYTES + 10))
    out: list[bytes] = []
    done = encode_rows([big], out.append, 1_048_576)
    assert done.cut == 1 and len(_json.loads(out[0])["Message"].encode()) <= schema.MAX_FIELD_BYTES
    assert row_encoder()([big]) == [None]


_in_window = st.integers(-40 * 3600, 20 * 3600).map(lambda s: stamp(timedelta(seconds=s)))
_stamps = st.one_of(
    _in_window,
    st.integers(-9, 9).map(lambda d: stamp(timedelta(days=d))),  # some out of the window
    _in_window.map(lambda s: s[:10] + " " + s[11:]),  # 27 characters, no "T"
    _in_window.map(lambda s: s[:26] + "z"),  # 27 characters, no "Z"
    _in_window.map(lambda s: s[:19] + "Z"),  # another length, still plainly in the window
    _in_window.map(lambda s: s[:-1] + "+00:00"),
    st.integers(),
)


@given(st.lists(st.tuples(_stamps, st.text(max_size=30)), max_size=8))
def test_batch_encoder_gives_each_row_what_the_row_check_gives(
    cases: list[tuple[Any, str]],
) -> None:
    """The list-level checks (lengths, strided "T"/"Z", min/max) answer as the per-row one."""
    rows = [row(when, message) for when, message in cases]
    lo, hi = encoding._window(datetime.now(timezone.utc))
    expected = [
        orjson.dumps(r) if encoding._plainly_in_window(r["TimeGenerated"], lo, hi) else None
        for r in rows
    ]
    assert row_encoder()(rows) == expected


def _without_now(data: bytes) -> bytes:
    """A row's bytes with its TimeGenerated (the time of encoding) blanked."""
    when = orjson.loads(data)["TimeGenerated"].encode()
    assert data.count(when) == 1
    return data.replace(when, b"NOW")


_old_props = st.one_of(
    st.none(),
    st.integers(),
    st.fixed_dictionaries(
        {},
        optional={
            "hal": st.one_of(
                st.fixed_dictionaries(
                    {"record_id": st.text(max_size=5)},
                    optional={"original_time": st.text(max_size=5)},
                ),
                st.integers(),
            ),
            "k": st.text(max_size=10),
        },
    ),
)


@given(
    st.lists(
        st.tuples(st.integers(3, 400), st.text(max_size=20), _old_props), min_size=1, max_size=6
    )
)
def test_an_old_file_gets_the_bytes_each_row_would_get(
    cases: list[tuple[int, str, Any]],
) -> None:
    """Rows all outside the window (checked over the list) are fixed as the row-by-row path fixes them."""
    rows = []
    for days, message, props in cases:
        r = row(stamp(timedelta(days=-days)), message)
        r["Properties"] = props
        rows.append(r)
    assert encoding._all_outside(rows, *encoding._window(datetime.now(timezone.utc)))
    assert row_encoder()(rows) == [None] * len(rows)  # left to encode_rows, which fixes them
    together: list[bytes] = []
    done = encode_rows(rows, together.append, 1_048_576)
    assert done.fixed == len(rows) and done.first_bad == rows[0]["TimeGenerated"]
    each: list[bytes] = []  # one fresh row makes the list mixed: each row is checked alone
    mixed = [*rows, row(stamp(timedelta(0)))]
    assert not encoding._all_outside(mixed, *encoding._window(datetime.now(timezone.utc)))
    assert encode_rows(mixed, each.append, 1_048_576).fixed == len(rows)
    assert list(map(_without_now, together)) == list(map(_without_now, each[:-1]))
    meter, alone = Meter(), Meter()
    recs = [Record(row=r, stream="stdout", start=0, end=1) for r in rows]
    meter.add_records(recs, row_encoder())
    for r in rows:
        alone.add_records([Record(row=r, stream="stdout", start=0, end=1)], lambda rs: [None])
    assert [r.size for r in recs] == [metering._measure_json(r, None) for r in rows]
    assert meter.billed == alone.billed
