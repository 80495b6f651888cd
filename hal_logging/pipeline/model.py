"""The pipeline's vocabulary: what flows between its stages.

source (file, tail, command) -> framing (bytes -> :class:`Line`) -> parsing
(:class:`Line` -> :class:`Record`) -> filters (:class:`Filter`) -> batching ->
sink (:class:`Sink`), with checkpoints committed only after the sink confirms.

Offsets are byte offsets in the source (file or pipe), so a record knows which
source bytes it came from: the checkpoint advances to the ``end`` of the last
record whose delivery (and that of every record before it) was confirmed, and
``record_id`` is derived from the ``start``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The row and the delivery error live below both the pipeline and the Azure
# engine (which must not import the pipeline); re-exported for the pipeline's modules.
from hal_logging.delivery import DeliveryError as DeliveryError
from hal_logging.delivery import Row as Row

RowEncoder = Callable[[Sequence[Row]], "list[bytes | None]"]
"""A sink's serialisation of rows (see :meth:`Sink.row_encoder`): each row's bytes, or
None for a row the sink encodes itself."""


@dataclass(slots=True)
class Line:
    """One framed line of a source, terminator removed.

    ``data`` is at most the framing cap long; ``length`` is the line's real
    byte length (larger when the framer cut it without holding it whole).
    ``start``/``end`` are source offsets: ``end`` is past the terminator.
    """

    data: bytes
    stream: str  # "stdout" | "stderr" | "unknown"
    start: int
    end: int
    received: float  # time.time() when the line was read
    length: int = -1  # original byte length when cut, else -1 (== len(data))
    final: bool = True  # False for a docker 16 KB partial piece (more follows)
    #: What unwrapping the line told (a docker log: its own timestamp, and how the
    #: line was wrapped, the prefix of the row's Properties.hal.format). Set only on
    #: the lines the parser unwraps; the framer's lines keep the defaults.
    time: str | None = None
    via: str = ""


@dataclass(slots=True)
class Record:
    """A row plus the source span it came from."""

    row: Row
    stream: str
    start: int
    end: int
    source: str = ""  # the source's key (see framing); part of record_id
    size: int = 0  # billed size estimate in bytes, filled by the run's stats
    #: The source bytes when every string of the row (keys and values, the VM
    #: side's own Properties.hal aside) appears in them verbatim: a pre-check
    #: (redaction) may scan these once instead of walking the row. None when
    #: unknown (escapes, JSON backslashes, multi-line groups, docker records).
    raw: bytes | None = None
    #: The row as stored text, serialised once: the twelve string columns in
    #: table order, then Properties as compact JSON. Set after the last filter
    #: by the run's stats (billing measures exactly this text) and reused by
    #: sinks that store text; whoever changes the row later must reset it.
    #: (Properties as a str, not orjson's bytes: those keep a 4 KB buffer each,
    #: and a few thousand records wait in batches.)
    columns: tuple[str, ...] | None = None
    #: What the sink's :meth:`Sink.prepare` made of the row (its own encoding).
    prepared: Any = None


@dataclass(slots=True)
class WriteResult:
    """What a sink did with one batch.

    ``delivered`` rows were confirmed (HTTP 204 / SQLite commit).
    ``dead_lettered`` rows were refused for good and written to the dead-letter
    file: they are kept, not lost, but not delivered (exit status non-zero).
    ``duplicates`` rows were already stored (local workspace only).
    """

    delivered: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)


def _overrides(cls: type, base: type, name: str) -> bool:
    """Whether ``cls`` has its own ``name`` rather than ``base``'s do-nothing default:
    a fact of the class, asked once per run instead of calling an empty hook per batch."""
    return getattr(cls, name) is not getattr(base, name)


class Sink(ABC):
    """Where rows go. A batch is delivered, dead-lettered, or raises DeliveryError.

    ``write`` must not return before the rows are durable at the destination.
    It may be called from several threads when ``max_in_flight`` > 1; the
    caller commits checkpoints strictly in order.
    """

    name: str = "sink"
    max_in_flight: int = 1
    #: ``time.monotonic()`` after which ``write`` must stop retrying and raise
    #: DeliveryError. None while reading; the runner sets it when the final
    #: flush starts (``--drain-timeout``).
    deadline: float | None = None
    #: When > 0: close a batch once the bytes :meth:`prepare` reports reach
    #: this (the sink's own measure, e.g. JSON bytes of one request), instead
    #: of waiting for the run's billed-bytes limit. Lets a batch fill exactly
    #: one request of a size-limited service.
    batch_bytes: int = 0

    @abstractmethod
    def write(self, records: Sequence[Record]) -> WriteResult: ...

    def row_encoder(self) -> RowEncoder | None:
        """Optional: the sink's serialisation of one row, for the run's stats.

        The stats walk every row anyway to measure it; a sink that sends JSON
        returns a function here (fresh per call: it may capture the time) that
        gives each row's exact bytes, or None for a row the sink must handle
        itself in :meth:`prepare`. The stats then keep those bytes in
        ``Record.prepared`` and measure the row from them: one serialisation
        per row instead of two.
        """
        return None

    def prepare(self, records: Sequence[Record]) -> int | None:
        """Optional: encode records for ``write`` (into ``Record.prepared``).

        Returns the bytes prepared, in the measure of :attr:`batch_bytes`
        (None: not measured).

        Called on the reading thread when records enter a batch (after the
        filters and the run's stats), while they are still in the CPU cache:
        encoding there is cheaper than on the delivery thread a batch later.
        Must not fail; ``write`` must still work for records not prepared.
        A sink may release the row's dict here by replacing ``Record.row``
        with an ``orjson.Fragment`` of its JSON (the Azure sink does: it is
        what waiting batches weigh): after ``prepare``, code other than the
        sink may only serialise ``row`` with ``hal_logging._json.dumps`` (as
        the wrap-mode spool does), never index it.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Called once, after the last write."""

    # The runner asks these once, when it starts, rather than calling a hook
    # per batch that does nothing: the optional hooks above are declared here,
    # and whether a sink has one is a fact of its class.
    @classmethod
    def prepares(cls) -> bool:
        """Whether this sink implements :meth:`prepare`."""
        return _overrides(cls, Sink, "prepare")

    @classmethod
    def encodes_rows(cls) -> bool:
        """Whether this sink implements :meth:`row_encoder`."""
        return _overrides(cls, Sink, "row_encoder")


class Filter(ABC):
    """A step between parsing and batching: may change, drop, or add records.

    Filters must never drop a record silently: a drop is counted in ``stats``
    (the summary prints it). ``flush`` is called at the end of input, and
    periodically, so stateful filters (repeat folding) can release what they hold.
    """

    name: str = "filter"
    #: Plain lines about the filter's setup for the forwarder to print (a
    #: variable named for redaction but not set, say). Never a record.
    notes: Sequence[str] = ()

    def __init__(self) -> None:
        self.stats: dict[str, int] = {}

    @abstractmethod
    def process(self, record: Record) -> Iterable[Record]: ...

    def process_batch(self, records: list[Record]) -> list[Record]:
        """``process`` over a list, in order (filters may override it to go faster)."""
        out: list[Record] = []
        extend = out.extend
        process = self.process
        for r in records:
            extend(process(r))
        return out

    def flush(self) -> Iterable[Record]:
        return ()

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def prescan(self, source: str, stream: str, data: bytes, base: int) -> None:  # noqa: B027
        """Optional: look at a chunk of source bytes before its lines are parsed.

        ``data`` is the chunk of ``source``'s ``stream`` that starts at offset
        ``base``. Redaction scans it once for anything that could be a secret,
        so records from clean bytes can pass it untouched.
        """

    def held_starts(self) -> Mapping[tuple[str, str], int]:
        """Optional: the source offset of the first record this filter still holds.

        Keyed by (source, stream). A filter that holds records back (repeat
        folding) says so here, so that no checkpoint passes a record it has
        not released yet.
        """
        return {}

    @classmethod
    def prescans(cls) -> bool:
        """Whether this filter implements :meth:`prescan` (asked once per run)."""
        return _overrides(cls, Filter, "prescan")

    @classmethod
    def holds_records(cls) -> bool:
        """Whether this filter implements :meth:`held_starts` (asked once per run)."""
        return _overrides(cls, Filter, "held_starts")
