"""Wrap mode's spool: rows of a command's output that could not be delivered, kept for ``--resend``.

A pipe cannot be re-read, so when delivery fails for good the runner hands the
undelivered records here (``Runner.on_undelivered``); they are appended as wire
lines (``{"_hal":1,...}``, every column intact), each batch on disk before the
run reports where they are kept, and ``hal-logging-forward --resend FILE``
ships them later with their record ids and context.
"""

from __future__ import annotations

from collections.abc import Sequence

from hal_logging.delivery.wirefile import WireFile
from hal_logging.pipeline.model import Record

__all__ = ["Spool"]


class Spool:
    """The spool file at ``path`` (created on the first undelivered row) and how many rows it took."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self._file = WireFile(path)

    def write(self, records: Sequence[Record]) -> None:
        """Append the records' rows (dicts or the sink's prepared JSON fragments), fsynced."""
        self.rows += self._file.append_rows([r.row for r in records])

    def close(self) -> None:
        self._file.close()
