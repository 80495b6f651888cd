"""Wrap mode's spool: the rows a run could not deliver, kept where a rerun can ship them.

A pipe cannot be re-read, so wrap mode has no input file and checkpoint to
fall back on the way files mode does. Rows that could not be delivered are
appended here as wire lines, the format ``hal-logging-forward --resend FILE``
reads back with every column (record id and context included) intact.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hal_logging import schema


class Spool:
    """Wrap mode's undelivered rows, kept as wire lines for ``hal-logging-forward --resend FILE``.

    A pipe cannot be re-read, so rows that could not be delivered are written
    here (one ``{"_hal":1,...}`` line per row, the format the forwarder reads
    back with every column intact).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: Any = None
        self.rows = 0

    def write(self, records: Sequence[Any]) -> None:
        from hal_logging import _json

        if self._fh is None:
            self._fh = open(self.path, "ab")
        prefix = schema.WIRE_PREFIX
        for r in records:
            body = _json.dumps(r.row)
            self._fh.write(prefix + body[1:] + b"\n" if len(body) > 2 else prefix[:-1] + b"}\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.rows += len(records)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


__all__ = ["Spool"]
