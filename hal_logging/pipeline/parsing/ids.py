"""Record ids: stable across runs, so rows sent twice can be de-duplicated.

Every record's ``Properties.hal.record_id`` is made here; ``--resend`` keeps the
ids that match :data:`RESEND_ID`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = ["RESEND_ID", "record_id"]

#: A record id that ``--resend`` keeps: :func:`record_id`'s 32 hex digits, or
#: the in-process handler's ``<12 hex>-<pid hex>-<seq hex>``.
RESEND_ID: Final = re.compile(r"[0-9a-f]{32}|[0-9a-f]{12}-[0-9a-f]{1,16}-[0-9a-f]{1,16}")


def record_id(source: str, stream: str, start: int) -> str:
    """Stable id of the record that starts at ``start`` in ``stream`` of ``source`` (hex).

    32 hex digits: 20 of BLAKE2b(``source\\0stream\\0``) (80 bits), then the start
    offset in 12 (more past 256 TB). The same source bytes give the same id in
    every run, so re-sent rows can be de-duplicated, and no two records of the
    same stream share an offset. Why not a hash of all three: ids of one source
    then grow with the offset, so the local workspace's UNIQUE index on them
    grows at its end, like an append; random ids dirtied an index page per row
    in every batch (measured: 38% of the workspace's write cost, growing with
    its size). Two sources collide only if their 80-bit prefixes do (for a
    million sources in one workspace, a chance of about 4e-13).
    """
    return _id_prefix(source, stream) + _OFFSET_HEX % start


_OFFSET_HEX: Final = "%012x"


def _id_prefix(source: str, stream: str) -> str:
    """The part of a record id that is the same for every record of a stream."""
    key = f"{source}\0{stream}\0".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=10).hexdigest()
