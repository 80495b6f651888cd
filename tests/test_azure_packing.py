"""Packing serialised rows into requests within both 1 MiB limits, called directly (no uploader)."""

from __future__ import annotations

import gzip
import os

from hypothesis import given
from hypothesis import strategies as st

from hal_logging.azure.packing import EncodedRows, gzip_bytes, join_rows, make_packets, pack


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
