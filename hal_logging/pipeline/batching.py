"""Batching by rows, bytes and time, and the batches that carry checkpoint marks.

Why batches: a sink confirms per batch (one SQLite transaction, one set of HTTP
requests), so fewer, larger batches are cheaper; but in follow and wrap modes a
line must reach the sink within about ``flush_interval`` seconds, so time also
closes a batch.

A batch is cut only where the runner knows a consistent checkpoint (after a
whole chunk of input was framed, parsed and filtered), so it can carry *marks*:
for each input, how far the checkpoint may advance once this batch and every
batch before it are delivered. Limits are therefore soft: a batch closes at the
first chunk boundary past ``max_rows`` or ``max_bytes`` (billed bytes), or past
the point where the next chunk would not fit ``sink_bytes`` in the sink's own
measure (:attr:`Sink.batch_bytes`: for Azure, the JSON of one request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hal_logging.pipeline.model import Record


@dataclass
class Batch:
    """Records to deliver plus the checkpoint entries they complete."""

    seq: int
    records: list[Record]
    nbytes: int
    #: checkpoint store path -> {input key -> checkpoint entry}
    marks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class Batcher:
    """Accumulates records; says when the batch is full or due."""

    def __init__(self, max_rows: int, max_bytes: int, interval: float, sink_bytes: int = 0) -> None:
        self.max_rows = max(1, max_rows)
        self.max_bytes = max(1, max_bytes)
        self.interval = max(0.0, interval)
        #: 0: not used; else close at this many bytes as the sink measures them.
        self.max_sink_bytes = max(0, sink_bytes)
        self.records: list[Record] = []
        self.nbytes = 0
        self.sink_bytes = 0
        self.last_sink_add = 0
        self.oldest: float | None = None  # time.monotonic() of the first pending record
        self._seq = 0

    def add(
        self,
        records: list[Record],
        now: float,
        nbytes: int | None = None,
        sink_bytes: int | None = None,
    ) -> None:
        """Add records; ``nbytes`` is their total ``size`` when the caller knows it,
        ``sink_bytes`` their size as the sink measures it (see :class:`Batcher`)."""
        if not records:
            return
        if self.oldest is None:
            self.oldest = now
        self.records.extend(records)
        self.nbytes += sum(r.size for r in records) if nbytes is None else nbytes
        if sink_bytes:
            self.sink_bytes += sink_bytes
            self.last_sink_add = sink_bytes

    @property
    def full(self) -> bool:
        return (
            len(self.records) >= self.max_rows
            or self.nbytes >= self.max_bytes
            # Full when the next add (guessed from the last, +25%) would not fit:
            # batches fill most of the sink's limit without going over it.
            or 0 < self.max_sink_bytes <= self.sink_bytes + self.last_sink_add * 5 // 4
        )

    def due(self, now: float) -> bool:
        return self.oldest is not None and now - self.oldest >= self.interval

    def next_deadline(self) -> float | None:
        return None if self.oldest is None else self.oldest + self.interval

    def take(self) -> Batch:
        self._seq += 1
        batch = Batch(self._seq, self.records, self.nbytes)
        self.records = []
        self.nbytes = 0
        self.sink_bytes = 0
        self.oldest = None
        return batch
