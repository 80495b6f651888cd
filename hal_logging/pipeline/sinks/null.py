"""The dry-run sink: accepts every batch and keeps nothing.

``--dry-run`` runs the whole pipeline (parsing, trust, redaction, cost rules,
batching) so its volume and cost figures are the ones a real run would ship;
only this last step differs. Nothing is written or sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from hal_logging.pipeline.model import Record, Sink, WriteResult


class NullSink(Sink):
    name = "dry-run"
    max_in_flight = 1

    def write(self, records: Sequence[Record]) -> WriteResult:
        return WriteResult(delivered=len(records))
