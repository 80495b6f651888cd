"""Packing rows into requests that the Logs Ingestion API takes: exact accounting of both 1 MiB limits.

The service refuses a request whose body is over 1,048,576 bytes, counted both
as sent (gzip) and unzipped. Rows are packed in order into bodies ``[`` +
rows joined by ``,`` + ``]``; the accounting counts every separator, so the
unzipped limit holds by construction (the SDK's own list path overshoots it).
Each body is gzipped; in the rare case the gzip output is still over the
limit (incompressible text), the range is halved until it fits.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_REQUEST_BYTES",
    "EncodedRows",
    "Packet",
    "gzip_bytes",
    "join_rows",
    "make_packets",
    "pack",
    "plan_packets",
]

#: The service's limit per request, on the body both as sent and unzipped.
MAX_REQUEST_BYTES: Final = 1_048_576


class EncodedRows:
    """Serialised rows in one buffer, each followed by ``,``: a request body is one slice.

    Keeping rows in a single buffer rather than one ``bytes`` each matters:
    orjson returns its output in a buffer of at least ~8 KB, so a list of
    per-row results would hold ~20x the JSON size in memory.
    """

    __slots__ = ("buf", "starts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.starts: list[int] = []

    @classmethod
    def of(cls, rows: Sequence[bytes]) -> EncodedRows:
        enc = cls()
        if rows:
            enc.buf = bytearray(b",").join(rows)
            enc.buf += b","
            enc.starts = list(itertools.accumulate([len(r) + 1 for r in rows], initial=0))
            enc.starts.pop()
        return enc

    def add(self, data: bytes) -> None:
        self.starts.append(len(self.buf))
        self.buf += data
        self.buf += b","

    def __len__(self) -> int:
        return len(self.starts)

    def end(self, i: int) -> int:
        """Offset just past row ``i`` (before its comma)."""
        return (self.starts[i + 1] if i + 1 < len(self.starts) else len(self.buf)) - 1

    def sizes(self) -> list[int]:
        return [self.end(i) - start for i, start in enumerate(self.starts)]

    def row(self, i: int) -> bytes:
        return bytes(self.buf[self.starts[i] : self.end(i)])

    def array_size(self, a: int, b: int) -> int:
        """Bytes of ``[`` + rows a..b-1 joined by ``,`` + ``]``."""
        return self.end(b - 1) - self.starts[a] + 2


@dataclass
class Packet:
    """One request: rows ``a..b-1`` of an :class:`EncodedRows`, gzipped."""

    enc: EncodedRows
    a: int
    b: int
    body: bytes  # gzip
    raw_size: int

    @property
    def count(self) -> int:
        return self.b - self.a

    def rows(self) -> list[bytes]:
        return [self.enc.row(i) for i in range(self.a, self.b)]


def join_rows(rows: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(rows) + b"]"


def plan_packets(sizes: Sequence[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` ranges whose JSON array is at most ``limit`` bytes.

    Exact: an array of n rows is ``2 + sum(sizes) + (n - 1)`` bytes. A single
    row longer than ``limit - 2`` gets a range of its own (rowfit prevents it).
    """
    ranges: list[tuple[int, int]] = []
    start, total = 0, 2
    for i, size in enumerate(sizes):
        if i == start:
            total = 2 + size
            continue
        if total + 1 + size > limit:
            ranges.append((start, i))
            start, total = i, 2 + size
        else:
            total += 1 + size
    if sizes:
        ranges.append((start, len(sizes)))
    return ranges


def gzip_bytes(data: bytes, level: int) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


def make_packets(enc: EncodedRows, a: int, b: int, limit: int, level: int) -> list[Packet]:
    """Rows ``a..b-1`` gzipped as one packet, or halved until each gzip body is within ``limit``."""
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    with memoryview(enc.buf) as view:
        body = comp.compress(b"[") + comp.compress(view[enc.starts[a] : enc.end(b - 1)])
    body += comp.compress(b"]") + comp.flush()
    if len(body) > limit and b - a > 1:
        mid = (a + b) // 2
        return make_packets(enc, a, mid, limit, level) + make_packets(enc, mid, b, limit, level)
    return [Packet(enc, a, b, body, enc.array_size(a, b))]


def pack(enc: EncodedRows, limit: int, level: int) -> list[Packet]:
    """All rows of ``enc``, in order, as packets within ``limit`` both unzipped and gzipped."""
    packets: list[Packet] = []
    for a, b in plan_packets(enc.sizes(), limit):
        packets.extend(make_packets(enc, a, b, limit, level))
    return packets
