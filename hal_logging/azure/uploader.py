"""The delivery engine for the Logs Ingestion API: exact requests, honest retries, no silent loss.

Used by the forwarder's :class:`~hal_logging.pipeline.sinks.azure.AzureSink` and by
the VM side's in-process logging handler. Thread-safe: any number of threads may
call :meth:`Uploader.send` at once; at most ``max_in_flight`` requests are on the
wire together.

This module orchestrates; each step is a module of its own:

1. **Serialise once** (:mod:`~hal_logging.azure.encoding`): each row made to fit,
   its TimeGenerated checked against the window the service keeps, dumped with
   orjson once. Those bytes are what is sent, bisected and dead-lettered.
2. **Pack exactly** (:mod:`~hal_logging.azure.packing`): bodies within both
   1 MiB limits (unzipped and gzipped) by construction.
3. **Send** (:mod:`~hal_logging.azure.transport`): one POST through the real SDK,
   its answer as an outcome.
4. **Retry what can succeed later** (:mod:`~hal_logging.azure.retry`): backoff,
   ``Retry-After``, the deadline. A connection that broke after the body was sent
   leaves the outcome unknown: the retry may duplicate rows, which carry
   ``Properties.hal.record_id`` for de-duplication; such requests are counted.
5. **Split what the service refuses**: 400 and 413 halve the batch until the
   refused rows are alone; everything else is delivered and each refused row goes
   to the dead letter (:mod:`~hal_logging.azure.deadletter`), which
   ``hal-logging-forward FILE`` sends again once the cause is fixed.
6. **Stop on what retrying cannot fix**: 401, 403 and 404 raise
   ``DeliveryError(fatal=True)`` saying what to check
   (:mod:`~hal_logging.azure.messages`); so does a credential that cannot get a
   token at all.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hal_logging import schema
from hal_logging._json import exact_copy
from hal_logging.azure import encoding, messages, retry
from hal_logging.azure.deadletter import DeadLetter, dead_letter_line
from hal_logging.azure.packing import (
    MAX_REQUEST_BYTES,
    EncodedRows,
    Packet,
    join_rows,
    make_packets,
    plan_offsets,
    plan_packets,
)
from hal_logging.azure.retry import Deadline
from hal_logging.azure.transport import Outcome, Transport
from hal_logging.delivery import DeliveryError, Row

__all__ = [
    "MAX_REQUEST_BYTES",
    "Deadline",
    "EncodedRows",
    "Packet",
    "UploadResult",
    "UploadSettings",
    "Uploader",
    "dead_letter_line",
    "join_rows",
    "plan_packets",
]

log = logging.getLogger("hal_logging.azure")


@dataclass
class UploadSettings:
    """Tuning knobs; the defaults suit a VM forwarding a benchmark's logs."""

    #: Concurrent requests of one send(). 0: send inline, in the caller's thread,
    #: one request after the other (no pool thread that interpreter exit would wait
    #: for while a request hangs: what an in-process logging handler needs).
    max_in_flight: int = 4
    max_request_bytes: int = MAX_REQUEST_BYTES
    compress_level: int = 3  # measured: level 3 costs ~1/5 of level 9 for ~20% more bytes
    connection_timeout: float = 10.0
    read_timeout: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    #: Retry window of a send() given no deadline; None retries until the deadline
    #: a caller may set later (the forwarder's drain), i.e. through an outage.
    retry_timeout: float | None = None


@dataclass
class UploadResult:
    """What one ``send`` did. ``delivered + dead_lettered`` == rows given."""

    delivered: int = 0
    dead_lettered: int = 0
    requests: int = 0
    retries: int = 0
    unknown_outcomes: int = 0  # requests whose answer was lost after sending (may duplicate)
    time_fixed: int = 0
    rows_cut: int = 0
    bytes_sent: int = 0
    bytes_raw: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: UploadResult) -> None:
        for name in (
            "delivered",
            "dead_lettered",
            "requests",
            "retries",
            "unknown_outcomes",
            "time_fixed",
            "rows_cut",
            "bytes_sent",
            "bytes_raw",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for note in other.notes:
            if note not in self.notes:
                self.notes.append(note)


class Uploader:
    """Deliver rows to one DCR stream; see the module docstring for the rules.

    ``credential`` is an ``azure.core`` TokenCredential, or a kind for
    :func:`hal_logging.azure.credentials.make_credential` (``"auto"`` etc.).
    ``dead_letter`` is the JSON-lines file for refused rows (``None``: refused
    rows raise DeliveryError instead, so nothing is dropped silently).
    """

    def __init__(
        self,
        endpoint: str,
        rule_id: str,
        stream: str = schema.STREAM_NAME,
        *,
        credential: Any = "auto",
        dead_letter: str | os.PathLike[str] | None = None,
        settings: UploadSettings | None = None,
        client: Any = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.rule_id = rule_id
        self.stream = stream
        self.settings = settings or UploadSettings()
        self._dead = DeadLetter(dead_letter, rule_id, stream) if dead_letter else None
        self.dead_letter = self._dead.path if self._dead else None
        self.transport = Transport(
            self.endpoint,
            rule_id,
            stream,
            credential=credential,
            connection_timeout=self.settings.connection_timeout,
            read_timeout=self.settings.read_timeout,
            max_in_flight=self.settings.max_in_flight,
            client=client,
        )
        self.credential_description = self.transport.credential_description
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max(1, self.settings.max_in_flight), thread_name_prefix="hal-azure-req"
        )
        self._batches: ThreadPoolExecutor | None = None
        self._time_warned = False
        self._closed = False
        self.totals = UploadResult()
        self._totals_lock = threading.Lock()

    def client(self) -> Any:
        """The SDK client, built on first use (imports azure.* lazily)."""
        return self.transport.client()

    # --- step 1: serialise once -------------------------------------------------------
    def encode(self, rows: Sequence[Row], result: UploadResult | None = None) -> EncodedRows:
        """Serialised rows, fitted and time-checked (the only serialisation)."""
        out = EncodedRows()
        self._encode(rows, result, out.add)
        return out

    def encode_each(self, rows: Sequence[Row], result: UploadResult | None = None) -> list[bytes]:
        """Like :meth:`encode`, each row as its own exact-size ``bytes``.

        For rows kept a while (``AzureSink.prepare``): orjson's own result
        holds a buffer of ~8 KB, so each is copied to its exact size.
        """
        parts: list[bytes] = []
        push = parts.append

        def keep(data: bytes) -> None:
            push(exact_copy(data))

        self._encode(rows, result, keep)
        return parts

    def row_encoder(self) -> Callable[[Sequence[Row]], list[bytes | None]]:
        """Each usual row's exact bytes as :meth:`encode_each` gives them, else None.

        See :func:`hal_logging.azure.encoding.row_encoder`; call it per batch.
        """
        return encoding.row_encoder()

    def _encode(
        self, rows: Sequence[Row], result: UploadResult | None, append: Callable[[bytes], None]
    ) -> None:
        done = encoding.encode_rows(rows, append, self.settings.max_request_bytes)
        fixed = done.fixed
        if result is not None:
            result.time_fixed += fixed
            result.rows_cut += done.cut
            if fixed:
                result.notes.append(encoding.TIME_NOTE)
        if fixed and not self._time_warned:
            self._time_warned = True
            # Once per uploader. Only through configured logging: the forwarder
            # reports the same note in its summary, and lastResort would repeat it.
            if log.hasHandlers():
                log.warning("%s (first seen: %r)", encoding.TIME_NOTE, done.first_bad)

    # --- step 2: pack exactly ----------------------------------------------------------
    def pack(self, encoded: EncodedRows | Sequence[bytes]) -> list[Packet]:
        enc = encoded if isinstance(encoded, EncodedRows) else EncodedRows.of(encoded)
        packets: list[Packet] = []
        for a, b in plan_offsets(enc.offsets(), self.settings.max_request_bytes):
            packets.extend(self._make_packets(enc, a, b))
        return packets

    def _make_packets(self, enc: EncodedRows, a: int, b: int) -> list[Packet]:
        return make_packets(
            enc, a, b, self.settings.max_request_bytes, self.settings.compress_level
        )

    # --- the public API ----------------------------------------------------------------
    def send(self, rows: Sequence[Row], *, deadline: Deadline = None) -> UploadResult:
        """Deliver ``rows``; returns when each is delivered or dead-lettered.

        Raises DeliveryError when some rows could not be delivered by the
        deadline (``fatal=False``: try again later) or never can be with this
        configuration (``fatal=True``). Rows of one call may then be partly
        delivered; callers resend the whole call later (duplicates carry a record id).
        """
        result = UploadResult()
        encoded = self.encode(rows, result)
        self._send_encoded(encoded, deadline, result)
        return result

    def send_encoded(
        self, encoded: EncodedRows | Sequence[bytes], *, deadline: Deadline = None
    ) -> UploadResult:
        """Like :meth:`send` for rows already serialised (and fitted) by the caller.

        An :class:`EncodedRows` (e.g. made by :meth:`encode` earlier, on another
        thread) is sent as it is, without a copy.
        """
        result = UploadResult()
        enc = encoded if isinstance(encoded, EncodedRows) else EncodedRows.of(encoded)
        self._send_encoded(enc, deadline, result)
        return result

    def submit(self, rows: Sequence[Row], *, deadline: Deadline = None) -> Future[UploadResult]:
        """:meth:`send` in the background; futures complete in any order, so commit in yours."""
        with self._client_lock:
            if self._batches is None:
                self._batches = ThreadPoolExecutor(
                    max(1, self.settings.max_in_flight), thread_name_prefix="hal-azure-batch"
                )
            pool = self._batches
        return pool.submit(self.send, list(rows), deadline=deadline)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._batches is not None:
            self._batches.shutdown(wait=True)
        self._pool.shutdown(wait=True)
        self.transport.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending --------------------------------------------------------------------------
    def _send_encoded(self, encoded: EncodedRows, deadline: Deadline, result: UploadResult) -> None:
        if not encoded:
            return
        end = retry.deadline_fn(deadline, self.settings.retry_timeout)
        packets = self.pack(encoded)
        cancel = threading.Event()
        errors: list[BaseException] = []
        if self.settings.max_in_flight <= 0:
            for packet in packets:
                try:
                    result.add(self._deliver(packet, end, cancel))
                except BaseException as exc:
                    errors.append(exc)
                    break
        else:
            futures = [self._pool.submit(self._deliver, p, end, cancel) for p in packets]
            for fut in futures:
                try:
                    result.add(fut.result())
                except retry.Cancelled:
                    pass
                except BaseException as exc:
                    cancel.set()
                    errors.append(exc)
        with self._totals_lock:
            self.totals.add(result)
        if errors:
            fatal = [e for e in errors if isinstance(e, DeliveryError) and e.fatal]
            raise (fatal or errors)[0]

    def _deliver(
        self, packet: Packet, deadline: Callable[[], float | None], cancel: threading.Event
    ) -> UploadResult:
        """One packet: retried until delivered, bisected on 400/413, or an error raised."""
        result = UploadResult()
        attempt = 0
        while True:
            if cancel.is_set():
                raise retry.Cancelled()
            result.requests += 1
            outcome = self.transport.post(packet.body)
            if outcome.ok:
                result.delivered += packet.count
                result.bytes_sent += len(packet.body)
                result.bytes_raw += packet.raw_size
                return result
            if outcome.unknown:
                result.unknown_outcomes += 1
            status = outcome.status
            if retry.should_split(status):
                return self._split(packet, outcome, deadline, cancel, result)
            if outcome.fatal_message is not None:
                raise DeliveryError(outcome.fatal_message, fatal=True, status=status)
            # Retryable: wait, bounded by the deadline (which a drain may set meanwhile).
            delay = (
                outcome.retry_after
                if outcome.retry_after is not None
                else retry.backoff(attempt, self.settings.backoff_base, self.settings.backoff_max)
            )
            attempt += 1
            result.retries += 1
            if not retry.wait(delay, deadline, cancel):
                raise DeliveryError(
                    f"Azure Monitor did not accept {packet.count} rows before the deadline "
                    f"(last answer: {outcome.describe()}; {attempt} attempts); they are kept for a later run",
                    fatal=False,
                    status=status,
                )

    def _split(
        self,
        packet: Packet,
        outcome: Outcome,
        deadline: Callable[[], float | None],
        cancel: threading.Event,
        result: UploadResult,
    ) -> UploadResult:
        if packet.count == 1:
            self._dead_letter(packet.rows(), outcome)
            result.dead_lettered += 1
            return result
        mid = (packet.a + packet.b) // 2
        for a, b in ((packet.a, mid), (mid, packet.b)):
            for sub in self._make_packets(packet.enc, a, b):
                result.add(self._deliver(sub, deadline, cancel))
        return result

    def _dead_letter(self, rows: Sequence[bytes], outcome: Outcome) -> None:
        if self._dead is None:
            raise DeliveryError(
                messages.no_dead_letter_message(len(rows), outcome.describe()),
                fatal=True,
                status=outcome.status,
            )
        self._dead.keep(rows, outcome.status, outcome.code, outcome.message, outcome.describe())
