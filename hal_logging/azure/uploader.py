"""The delivery engine for the Logs Ingestion API: exact requests, honest retries, no silent loss.

Used by the forwarder's :class:`~hal_logging.pipeline.sinks.azure.AzureSink` and by
the VM side's in-process logging handler. Thread-safe: any number of threads may
call :meth:`Uploader.send` at once; at most ``max_in_flight`` requests are on the
wire together.

How a call to ``send(rows)`` goes:

1. **Serialise once.** Each row is made to fit (:mod:`hal_logging.azure.rowfit`),
   its TimeGenerated checked against the service's window (older than 2 days or
   more than 1 day ahead would be silently replaced: the row gets the current
   time and keeps its own in ``Properties.hal.original_time``), and dumped with
   orjson — once. Those bytes are what is sent, bisected and dead-lettered.
2. **Pack exactly.** Rows are packed in order into bodies ``[`` + rows joined by
   ``,`` + ``]`` of at most 1,048,576 bytes — the accounting counts every
   separator, so the limit holds by construction (the SDK's list path
   overshoots it, docs/facts.md §2). Each body is gzipped; in the rare case the gzip
   output is larger than the limit (incompressible text), the body is halved.
3. **Send through the real SDK.** ``LogsIngestionClient.upload(rule, stream,
   BytesIO(gzip))`` sends our bytes as they are. Chosen over ``upload(list)``
   by measurement (benchmarks/azure.py): the list path re-serialises every row
   twice with the stdlib ``json`` and compresses at level 9.
4. **Retry what can succeed later**: 408, 429, 500, 502, 503, 504, connection
   errors and timeouts, with exponential backoff and full jitter, honouring
   ``Retry-After`` (also ``retry-after-ms``), until the deadline. azure-core's own
   retry policy is switched off (``retry_total=0``) so the two never multiply.
   A connection that broke after the body was sent leaves the outcome unknown:
   the retry may duplicate rows, which carry ``Properties.hal.record_id`` for
   de-duplication; such requests are counted.
5. **Split what the service refuses**: 400 and 413 halve the batch until the
   refused rows are alone; everything else is delivered and each refused row is
   appended to the dead-letter file as a wire line (``{"_hal":1,...}``) with the
   service's answer in ``Properties.hal.dead_letter`` — ``hal-logging-forward
   FILE`` sends it again once the cause is fixed.
6. **Stop on what retrying cannot fix**: 401, 403 and 404 raise
   ``DeliveryError(fatal=True)`` naming what to check; so does a credential that
   cannot get a token at all.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import itertools
import logging
import operator
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import orjson

from hal_logging import _json, schema
from hal_logging.azure import credentials as creds
from hal_logging.azure.rowfit import fit_row
from hal_logging.pipeline.model import DeliveryError, Row

log = logging.getLogger("hal_logging.azure")

#: The service's limit per request, on the body both as sent and unzipped (docs/facts.md §1).
MAX_REQUEST_BYTES: Final = 1_048_576
RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
SPLIT_STATUS: Final = frozenset({400, 413})
FATAL_STATUS: Final = frozenset({401, 403, 404})
#: TimeGenerated window (docs/facts.md §1), with a margin for time spent in retries.
TIME_PAST: Final = timedelta(days=2) - timedelta(hours=1)
TIME_FUTURE: Final = timedelta(days=1) - timedelta(hours=1)
#: TimeGenerated values as the parser writes them ("YYYY-MM-DDTHH:MM:SS.ffffffZ"), joined.
_CANONICAL_TIMES: Final = re.compile(r"(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)+", re.ASCII)
_get_time: Final = operator.itemgetter("TimeGenerated")
_ONLY_27: Final = {27}
_TIME_NOTE: Final = (
    "some TimeGenerated values were more than 2 days old or 1 day ahead; Azure would have replaced them "
    "silently, so they were sent with the current time and kept in Properties.hal.original_time"
)

_FRACTION: Final = re.compile(r"(\.\d{6})\d+")

Deadline = float | Callable[[], float | None] | None


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


class _Cancelled(Exception):
    pass


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
        self.dead_letter = Path(dead_letter) if dead_letter else None
        self._credential_arg = credential
        self.credential_description = (
            creds.describe(credential) if isinstance(credential, str) else type(credential).__name__
        )
        self._client = client
        self._client_lock = threading.Lock()
        self._dead_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max(1, self.settings.max_in_flight), thread_name_prefix="hal-azure-req"
        )
        self._batches: ThreadPoolExecutor | None = None
        self._time_warned = False
        self._closed = False
        self.totals = UploadResult()
        self._totals_lock = threading.Lock()

    # --- the client ---------------------------------------------------------------
    def client(self) -> Any:
        """The SDK client, built on first use (imports azure.* lazily)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        try:
            from azure.core.pipeline.transport import RequestsTransport
            from azure.monitor.ingestion import LogsIngestionClient
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise DeliveryError(
                f"the Azure SDK is not installed ({exc}); install it with: pip install 'hal-logging[azure]'",
                fatal=True,
            ) from exc
        import requests

        for name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
            logger = logging.getLogger(name)
            if (
                logger.level == logging.NOTSET
            ):  # per-request INFO lines would flood the forwarder's log
                logger.setLevel(logging.WARNING)
        credential = self._credential_arg
        if isinstance(credential, str):
            try:
                credential = creds.make_credential(credential)
            except creds.CredentialConfigError as exc:
                raise DeliveryError(str(exc), fatal=True) from exc
        session = requests.Session()
        pool = max(4, self.settings.max_in_flight * 2)
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # What requests reads from the environment on every request (proxies
        # for this endpoint, honouring NO_PROXY; REQUESTS_CA_BUNDLE or
        # CURL_CA_BUNDLE; ~/.netrc), read once: measured ~0.4 ms of CPU per
        # request otherwise, for settings that do not change while we run.
        session.proxies.update(requests.utils.get_environ_proxies(self.endpoint))
        verify: bool | str = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        session.trust_env = False
        return LogsIngestionClient(
            self.endpoint,
            credential,
            retry_total=0,  # we retry ourselves (step 4 of the module docstring)
            transport=RequestsTransport(
                session=session, session_owner=True, connection_verify=verify
            ),
        )

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
            push(bytes(memoryview(data)))

        self._encode(rows, result, keep)
        return parts

    def row_encoder(self) -> Callable[[Sequence[Row]], list[bytes | None]]:
        """Each usual row's exact bytes as :meth:`encode_each` gives them, else None.

        For callers that walk every row anyway (the forwarder's stats): a row
        whose TimeGenerated is in the window the service keeps and that fits
        the field limit as it is, serialised by plain orjson; None for any
        other row (it then takes :meth:`encode_each`, which fixes and cuts).
        A list of rows all usual (the common case: one chunk of wire lines) is
        checked and encoded with C-level calls over the list, not a Python
        step per row. The time window is taken when this is called: call it
        per batch.
        """
        now = datetime.now(timezone.utc)
        lo = (now - TIME_PAST).strftime("%Y-%m-%dT%H:%M:%S")
        hi = (now + TIME_FUTURE).strftime("%Y-%m-%dT%H:%M:%S")
        dumps = orjson.dumps
        field_limit = schema.MAX_FIELD_BYTES
        canonical_times = _CANONICAL_TIMES.fullmatch

        def one(row: Row) -> bytes | None:
            if not _plainly_in_window(row.get("TimeGenerated"), lo, hi):
                return None
            try:
                data = dumps(row)
            except TypeError:  # orjson.JSONEncodeError too
                return None
            if len(data) > field_limit:
                return None
            # Exact size: orjson's own result keeps a buffer of ~4 KB (see encode_each).
            return bytes(memoryview(data))

        def encode(rows: Sequence[Row]) -> list[bytes | None]:
            if not rows:
                return []
            try:
                stamps = list(map(_get_time, rows))
                if (
                    set(map(len, stamps)) == _ONLY_27
                    and canonical_times("".join(stamps)) is not None
                    and lo <= min(stamps)[:19]
                    and max(stamps)[:19] <= hi
                ):
                    datas = list(map(dumps, rows))
                    if max(map(len, datas)) <= field_limit:
                        return [bytes(memoryview(d)) for d in datas]
            except (KeyError, TypeError):  # a row without a time, or odd values: one by one
                pass
            return list(map(one, rows))

        return encode

    def _encode(
        self, rows: Sequence[Row], result: UploadResult | None, append: Callable[[bytes], None]
    ) -> None:
        now = datetime.now(timezone.utc)
        lo = (now - TIME_PAST).strftime("%Y-%m-%dT%H:%M:%S")
        hi = (now + TIME_FUTURE).strftime("%Y-%m-%dT%H:%M:%S")
        now_text = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        limit = self.settings.max_request_bytes
        fast_dumps = orjson.dumps  # plain: ~30% faster than with options; odd rows fall back
        field_limit = schema.MAX_FIELD_BYTES
        fixed = cut = 0
        first_bad: Any = None
        for row in rows:
            stamp = row.get("TimeGenerated")
            if not _plainly_in_window(stamp, lo, hi) and not _time_ok(stamp, lo, hi, now):
                row = _with_original_time(row, stamp, now_text)
                if not fixed:
                    first_bad = stamp
                fixed += 1
            try:
                data = fast_dumps(row)
            except TypeError:  # orjson.JSONEncodeError too: non-str keys, odd types, cycles
                data = _json.dumps(row)
            if len(data) > field_limit:
                _, data, changed = fit_row(row, limit)
                cut += changed
            append(data)
        if result is not None:
            result.time_fixed += fixed
            result.rows_cut += cut
            if fixed:
                result.notes.append(_TIME_NOTE)
        if fixed and not self._time_warned:
            self._time_warned = True
            # Once per uploader. Only through configured logging: the forwarder
            # reports the same note in its summary, and lastResort would repeat it.
            if log.hasHandlers():
                log.warning("%s (first seen: %r)", _TIME_NOTE, first_bad)

    # --- step 2: pack exactly ----------------------------------------------------------
    def pack(self, encoded: EncodedRows | Sequence[bytes]) -> list[Packet]:
        enc = encoded if isinstance(encoded, EncodedRows) else EncodedRows.of(encoded)
        packets: list[Packet] = []
        for a, b in plan_packets(enc.sizes(), self.settings.max_request_bytes):
            packets.extend(self._make_packets(enc, a, b))
        return packets

    def _make_packets(self, enc: EncodedRows, a: int, b: int) -> list[Packet]:
        comp = zlib.compressobj(self.settings.compress_level, zlib.DEFLATED, 31)
        with memoryview(enc.buf) as view:
            body = comp.compress(b"[") + comp.compress(view[enc.starts[a] : enc.end(b - 1)])
        body += comp.compress(b"]") + comp.flush()
        if len(body) > self.settings.max_request_bytes and b - a > 1:
            mid = (a + b) // 2
            return self._make_packets(enc, a, mid) + self._make_packets(enc, mid, b)
        return [Packet(enc, a, b, body, enc.array_size(a, b))]

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
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending --------------------------------------------------------------------------
    def _send_encoded(self, encoded: EncodedRows, deadline: Deadline, result: UploadResult) -> None:
        if not encoded:
            return
        end = self._deadline_fn(deadline)
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
                except _Cancelled:
                    pass
                except BaseException as exc:
                    cancel.set()
                    errors.append(exc)
        with self._totals_lock:
            self.totals.add(result)
        if errors:
            fatal = [e for e in errors if isinstance(e, DeliveryError) and e.fatal]
            raise (fatal or errors)[0]

    def _deadline_fn(self, deadline: Deadline) -> Callable[[], float | None]:
        if callable(deadline):
            return deadline
        if deadline is None and self.settings.retry_timeout is not None:
            deadline = time.monotonic() + self.settings.retry_timeout
        fixed = deadline
        return lambda: fixed

    def _deliver(
        self, packet: Packet, deadline: Callable[[], float | None], cancel: threading.Event
    ) -> UploadResult:
        """One packet: retried until delivered, bisected on 400/413, or an error raised."""
        result = UploadResult()
        attempt = 0
        while True:
            if cancel.is_set():
                raise _Cancelled()
            result.requests += 1
            outcome = self._post(packet)
            if outcome.ok:
                result.delivered += packet.count
                result.bytes_sent += len(packet.body)
                result.bytes_raw += packet.raw_size
                return result
            if outcome.unknown:
                result.unknown_outcomes += 1
            status = outcome.status
            if status in SPLIT_STATUS or (
                status is not None
                and 400 <= status < 500
                and status not in RETRY_STATUS | FATAL_STATUS
            ):
                return self._split(packet, outcome, deadline, cancel, result)
            if outcome.fatal_message is not None:
                raise DeliveryError(outcome.fatal_message, fatal=True, status=status)
            # Retryable: wait, bounded by the deadline (which a drain may set meanwhile).
            delay = (
                outcome.retry_after if outcome.retry_after is not None else self._backoff(attempt)
            )
            attempt += 1
            result.retries += 1
            if not self._wait(delay, deadline, cancel):
                raise DeliveryError(
                    f"Azure Monitor did not accept {packet.count} rows before the deadline "
                    f"(last answer: {outcome.describe()}; {attempt} attempts); they are kept for a later run",
                    fatal=False,
                    status=status,
                )

    def _split(
        self,
        packet: Packet,
        outcome: _Outcome,
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

    def _backoff(self, attempt: int) -> float:
        cap = min(self.settings.backoff_max, self.settings.backoff_base * (2**attempt))
        return random.uniform(cap / 2, cap)

    def _wait(
        self, delay: float, deadline: Callable[[], float | None], cancel: threading.Event
    ) -> bool:
        """Sleep ``delay`` unless the deadline comes first (False) — re-reading the deadline."""
        wake = time.monotonic() + max(0.0, delay)
        while True:
            now = time.monotonic()
            end = deadline()
            if end is not None and now >= end:
                return False
            if end is not None and wake > end:
                return False  # the wait alone would pass the deadline: give up now
            if now >= wake:
                return True
            if cancel.wait(min(wake - now, 0.25)):
                raise _Cancelled()

    def _post(self, packet: Packet) -> _Outcome:
        try:
            from azure.core.exceptions import (
                ClientAuthenticationError,
                HttpResponseError,
                ServiceRequestError,
                ServiceResponseError,
            )
        except ImportError as exc:  # pragma: no cover
            raise DeliveryError(f"the Azure SDK is not installed ({exc})", fatal=True) from exc
        client = self.client()
        try:
            client.upload(
                self.rule_id,
                self.stream,
                io.BytesIO(packet.body),
                connection_timeout=self.settings.connection_timeout,
                read_timeout=self.settings.read_timeout,
            )
            return _Outcome(ok=True)
        except ClientAuthenticationError as exc:
            if _is_service_response(exc):
                return self._http_outcome(exc)
            token_status = int(getattr(exc, "status_code", None) or 0)
            if token_status == 429 or token_status >= 500:  # the token service is busy: retry
                return _Outcome(detail=f"token request answered {token_status}: {str(exc)[:200]}")
            return _Outcome(fatal_message=self._credential_message(exc))
        except HttpResponseError as exc:
            if exc.response is None:
                return _Outcome(unknown=True, detail=str(exc).splitlines()[0][:300])
            return self._http_outcome(exc)
        except ServiceResponseError as exc:  # sent; the answer was lost (cut, read timeout)
            return _Outcome(unknown=True, detail=f"{type(exc).__name__}: {str(exc)[:300]}")
        except ServiceRequestError as exc:  # not sent (connect failed)
            return _Outcome(detail=f"{type(exc).__name__}: {str(exc)[:300]}")
        except DeliveryError:
            raise
        except (OSError, ValueError) as exc:
            return _Outcome(unknown=True, detail=f"{type(exc).__name__}: {str(exc)[:300]}")

    def _http_outcome(self, exc: Any) -> _Outcome:
        status = int(exc.status_code or 0)
        response = exc.response
        code, message = _error_of(response)
        outcome = _Outcome(
            status=status, code=code, message=message, retry_after=_retry_after(response)
        )
        if status in FATAL_STATUS:
            outcome.fatal_message = self._fatal_message(status, code, message)
        return outcome

    def _fatal_message(self, status: int, code: str, message: str) -> str:
        said = f"{status} {code}: {message}".strip()
        if status == 401:
            return (
                f"Azure Monitor refused the token of the {self.credential_description} ({said}). "
                "Use a managed identity or a service principal: user tokens (az login) are refused "
                "(UnsupportedAccessTokenType). Check the tenant and that the identity exists. "
                "Nothing undelivered was dropped; run again once fixed."
            )
        if status == 403:
            return (
                f"The {self.credential_description} may not write to data collection rule {self.rule_id} "
                f"({said}). Give it the 'Monitoring Metrics Publisher' role on that rule; a new role "
                "assignment can take up to 30 minutes to apply. Nothing undelivered was dropped; run again then."
            )
        return (
            f"Azure Monitor at {self.endpoint} does not know rule {self.rule_id!r} or stream {self.stream!r} "
            f"({said}). The rule id must be the DCR's immutable id (dcr-...), not its name or resource id; "
            "the stream must be declared in that DCR (Custom-...); the endpoint must be the rule's data "
            "collection endpoint. Nothing undelivered was dropped; run again once fixed."
        )

    def _credential_message(self, exc: Exception) -> str:
        first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        return (
            f"Could not get a token for Azure Monitor with the {self.credential_description}: {first}. "
            "On an Azure VM, assign a managed identity (a user-assigned one: set AZURE_CLIENT_ID); "
            "elsewhere set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal. "
            "Nothing undelivered was dropped."
        )

    # --- dead letter ---------------------------------------------------------------------------
    def _dead_letter(self, rows: Sequence[bytes], outcome: _Outcome) -> None:
        if self.dead_letter is None:
            raise DeliveryError(
                f"Azure Monitor refused {len(rows)} row(s) ({outcome.describe()}) and no dead-letter "
                "file is configured; they are kept undelivered",
                fatal=True,
                status=outcome.status,
            )
        answer = {
            "status": outcome.status,
            "code": outcome.code,
            "message": outcome.message[:2000],
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "rule_id": self.rule_id,
            "stream": self.stream,
        }
        lines = [dead_letter_line(r, answer) for r in rows]
        with self._dead_lock:
            self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
            with open(self.dead_letter, "ab") as fh:
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
        log.warning(
            "Azure Monitor refused %d row(s) (%s); kept in %s",
            len(rows),
            outcome.describe(),
            self.dead_letter,
        )


def dead_letter_line(row_bytes: bytes, answer: dict[str, Any]) -> bytes:
    """A wire line (``{"_hal":1,...}``) for a refused row, its answer in Properties.hal.dead_letter."""
    try:
        row = _json.loads(row_bytes)
    except _json.JSONDecodeError:
        row = {"Message": row_bytes.decode("utf-8", "replace")}
    if not isinstance(row, dict):
        row = {"Message": _json.dumps_str(row)}
    props = row.get("Properties")
    props = dict(props) if isinstance(props, dict) else ({} if props is None else {"value": props})
    hal = props.get(schema.PROP_HAL)
    hal = dict(hal) if isinstance(hal, dict) else {}
    hal["dead_letter"] = answer
    props[schema.PROP_HAL] = hal
    row["Properties"] = props
    row.pop(schema.WIRE_VERSION_KEY, None)
    return schema.WIRE_PREFIX + _json.dumps(row)[1:] + b"\n"


@dataclass
class _Outcome:
    ok: bool = False
    status: int | None = None
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    unknown: bool = False
    fatal_message: str | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.status is not None:
            return f"{self.status} {self.code}: {self.message[:200]}".strip()
        return self.detail or "no answer"


def _is_service_response(exc: Any) -> bool:
    response = getattr(exc, "response", None)
    if response is None:
        return False
    url = str(getattr(getattr(response, "request", None), "url", "") or "")
    return "/dataCollectionRules/" in url


def _error_of(response: Any) -> tuple[str, str]:
    code = ""
    message = ""
    with contextlib.suppress(Exception):
        code = str(response.headers.get("x-ms-error-code") or "")
    with contextlib.suppress(Exception):
        doc = _json.loads(response.text())
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            code = str(doc["error"].get("code") or code)
            message = str(doc["error"].get("message") or "")
    if not message:
        with contextlib.suppress(Exception):
            message = str(response.text())[:500]
    return code, message


def _retry_after(response: Any) -> float | None:
    """Seconds from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` (seconds or a date)."""
    headers = getattr(response, "headers", None) or {}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            with contextlib.suppress(ValueError):
                return max(0.0, float(value) / 1000.0)
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


def _plainly_in_window(stamp: Any, lo: str, hi: str) -> bool:
    """The usual "YYYY-MM-DDTHH:MM:SS.ffffffZ" inside [lo, hi], compared as text.

    False says nothing yet: :func:`_time_ok` decides for any other form.
    """
    return (
        type(stamp) is str
        and len(stamp) >= 20
        and stamp[-1] == "Z"
        and stamp[10] == "T"
        and lo <= stamp[:19] <= hi
    )


def _time_ok(stamp: Any, lo: str, hi: str, now: datetime) -> bool:
    """Within the service's window? Lexical compare for the usual UTC form, parse otherwise."""
    if not isinstance(stamp, str):
        return False
    if len(stamp) >= 20 and stamp[10] == "T" and (stamp.endswith("Z") or stamp.endswith("+00:00")):
        key = stamp[:19]
        return lo <= key <= hi
    text = stamp.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(r"\1", text)  # Python 3.10 takes at most 6 fraction digits
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return now - TIME_PAST <= when <= now + TIME_FUTURE


def _with_original_time(row: Row, stamp: Any, now_text: str) -> Row:
    out = dict(row)
    props = out.get("Properties")
    props = dict(props) if isinstance(props, dict) else ({} if props is None else {"value": props})
    hal = props.get(schema.PROP_HAL)
    hal = dict(hal) if isinstance(hal, dict) else {}
    hal.setdefault(
        schema.HAL_ORIGINAL_TIME, stamp if isinstance(stamp, str) else _json.dumps_str(stamp)
    )
    props[schema.PROP_HAL] = hal
    out["Properties"] = props
    out["TimeGenerated"] = now_text
    return out
