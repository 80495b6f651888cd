"""JSON lines out: one row per line, to stdout or a file (``--sink jsonl``).

For piping into other tools (``jq``, another shipper) or keeping an archive.
Rows are the table's columns only (no ``_hal`` wire marker): this is output, not
a container's wire. A file is flushed and ``fsync``ed per batch before
``write`` returns, so the checkpoint never runs ahead of the bytes on disk.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hal_logging import _json
from hal_logging.delivery.wirefile import LineFile
from hal_logging.pipeline.model import DeliveryError, Record, Sink, WriteResult


class JsonlSink(Sink):
    name = "jsonl"
    max_in_flight = 1

    def __init__(self, output: str = "-") -> None:
        self.output = output
        self._is_file = output != "-"
        # A file is the durable line file the spool and the dead letter use
        # (flushed and fsynced per batch); stdout is written and flushed alike.
        self._file = (
            LineFile(output) if self._is_file else LineFile("-", stream=sys.stdout.buffer)
        )
        if self._is_file:
            try:
                self._file.open()
            except OSError as exc:
                raise DeliveryError(
                    f"cannot open {output} for JSON lines: {exc.strerror}; pass --output PATH or '-'",
                    fatal=True,
                ) from exc

    def write(self, records: Sequence[Record]) -> WriteResult:
        if not records:
            return WriteResult()
        dumps = _json.dumps
        payload = b"\n".join(dumps(r.row) for r in records) + b"\n"
        try:
            self._file.write(payload)
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
        self._file.close()
