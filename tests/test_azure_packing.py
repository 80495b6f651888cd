"""Packing serialised rows into requests within both 1 MiB limits, called directly (no uploader)."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal_logging.azure import packing
from hal_logging.azure.packing import (
    EncodedRows,
    compressor,
    gzip_bytes,
    join_rows,
    make_packets,
    pack,
    plan_offsets,
    plan_packets,
)


@given(st.lists(st.binary(min_size=2, max_size=2000), max_size=80), st.integers(2005, 20_000))
def test_pack_keeps_every_row_in_order_within_both_limits(rows: list[bytes], limit: int) -> None:
    enc = EncodedRows.of(rows)
    again = EncodedRows()
    for r in rows:
        again.add(r)
    assert again.buf == enc.buf and again.starts == enc.starts  # both ways build the same buffer
    packets = pack(enc, limit, 3)
    assert [r for p in packets for r in p.rows()] == rows
    for p in packets:
        assert p.raw_size == len(join_rows(p.rows())) <= limit
        assert len(p.body) <= limit
        assert gzip.decompress(p.body) == join_rows(p.rows())


def test_incompressible_range_is_halved_until_the_gzip_fits() -> None:
    rows = [os.urandom(1500).hex().encode() for _ in range(16)]  # 3000 bytes each, random
    enc = EncodedRows.of(rows)
    packets = make_packets(enc, 0, 16, 20_000, 0)  # level 0: gzip only adds bytes
    assert len(packets) > 1 and sum(p.count for p in packets) == 16
    assert all(len(p.body) <= 20_000 for p in packets)
    assert gzip.decompress(gzip_bytes(b"[1]", 3)) == b"[1]"


@pytest.mark.parametrize("isal", [True, False])
def test_gzip_is_isal_when_installed_and_zlib_otherwise(
    isal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isal:
        monkeypatch.setattr(packing, "_isal_zlib", None)
    zlib_type = type(zlib.compressobj())
    assert (type(compressor(3)) is zlib_type) is not isal
    assert type(compressor(0)) is zlib_type  # level 0 keeps zlib's meaning: stored, not compressed
    assert type(compressor(9)) is zlib_type
    rows = [b'{"Message":"line %d"}' % i for i in range(5000)]
    packets = pack(EncodedRows.of(rows), 20_000, 3)
    assert [r for p in packets for r in p.rows()] == rows
    for p in packets:
        assert zlib.decompress(p.body, 31) == join_rows(p.rows())  # plain gzip either way
    assert gzip.decompress(gzip_bytes(b"[1]", 3)) == b"[1]"


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(3, 1000))
def test_plan_by_offsets_is_the_greedy_plan(sizes: list[int], limit: int) -> None:
    expected: list[tuple[int, int]] = []  # the row-by-row greedy plan
    start, total = 0, 2
    for i, size in enumerate(sizes):
        if i == start:
            total = 2 + size
        elif total + 1 + size > limit:
            expected.append((start, i))
            start, total = i, 2 + size
        else:
            total += 1 + size
    if sizes:
        expected.append((start, len(sizes)))
    assert plan_packets(sizes, limit) == expected
    enc = EncodedRows.of([b"x" * s for s in sizes])
    assert enc.sizes() == sizes
    assert plan_offsets(enc.offsets(), limit) == expected
