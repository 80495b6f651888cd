"""JSON lines out: one row per line, to stdout or a file (``--sink jsonl``).

For piping into other tools (``jq``, another shipper) or keeping an archive.
Rows are the table's columns only (no ``_hal`` wire marker): this is output, not
a container's wire. A file is flushed and ``fsync``ed per batch before
``write`` returns, so the checkpoint never runs ahead of the bytes on disk.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import BinaryIO

from hal_logging import _json
from hal_logging.pipeline.model import DeliveryError, Record, Sink, WriteResult


class JsonlSink(Sink):
    name = "jsonl"
    max_in_flight = 1

    def __init__(self, output: str = "-") -> None:
        self.output = output
        self._lock = threading.Lock()
        self._fh: BinaryIO
        if output == "-":
            self._fh = sys.stdout.buffer
            self._is_file = False
        else:
            try:
                self._fh = open(output, "ab")
            except OSError as exc:
                raise DeliveryError(
                    f"cannot open {output} for JSON lines: {exc.strerror}; pass --output PATH or '-'",
                    fatal=True,
                ) from exc
            self._is_file = True

    def write(self, records: Sequence[Record]) -> WriteResult:
        if not records:
            return WriteResult()
        dumps = _json.dumps
        payload = b"\n".join(dumps(r.row) for r in records) + b"\n"
        with self._lock:
            try:
                self._fh.write(payload)
                self._fh.flush()
                if self._is_file:
                    os.fsync(self._fh.fileno())
            except BrokenPipeError as exc:
                raise DeliveryError(
                    "the reader of the JSON lines output went away (broken pipe)", fatal=True
                ) from exc
            except OSError as exc:
                raise DeliveryError(
                    f"cannot write JSON lines to {self.output}: {exc.strerror}", fatal=True
                ) from exc
        return WriteResult(delivered=len(records))

    def close(self) -> None:
        with self._lock:
            if self._is_file:
                self._fh.close()
