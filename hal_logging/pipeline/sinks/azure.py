"""The forwarder's Azure Monitor sink: a thin adapter over :class:`~hal_logging.azure.uploader.Uploader`.

All the delivery rules (exact 1 MiB gzip requests, retries, bisecting refused
batches, the dead-letter file, fatal 401/403/404) live in the uploader, which
the VM side's logging handler shares. This class maps the forwarder's config
onto it and reports in the pipeline's terms: ``write`` returns only once every
row is delivered (204) or kept in the dead-letter file, and raises
DeliveryError otherwise, so the runner never moves a checkpoint past a row
that is neither.

The retry window follows the runner: unbounded while reading (an outage is
waited out with backoff), bounded by ``self.deadline`` once the final drain
starts — the uploader re-reads it between attempts.

``HAL_LOGGING_AZURE_BACKOFF=BASE[,MAX]`` (seconds, default ``0.5,30``) tunes the
retry backoff without a flag; tests against the local stand-in shorten it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from hal_logging.azure.credentials import CREDENTIAL_KINDS
from hal_logging.azure.uploader import Uploader, UploadResult, UploadSettings
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import DeliveryError, Record, RowEncoder, Sink, WriteResult

BACKOFF_ENV = "HAL_LOGGING_AZURE_BACKOFF"
DEAD_LETTER_SUFFIX = ".hal-deadletter.jsonl"
DEFAULT_DEAD_LETTER = "hal-logging" + DEAD_LETTER_SUFFIX
#: orjson.Fragment (orjson >= 3.9): serialises as the JSON bytes it holds.
_FRAGMENT: Any = getattr(orjson, "Fragment", None)


def default_dead_letter(config: ForwardConfig) -> str:
    """Beside the first input file (like its checkpoint), else in the working directory."""
    if config.files:
        from hal_logging.pipeline.checkpoint import CHECKPOINT_SUFFIX, default_checkpoint_path

        checkpoint = config.checkpoint or default_checkpoint_path(config.files[0])
        base = (
            checkpoint[: -len(CHECKPOINT_SUFFIX)]
            if checkpoint.endswith(CHECKPOINT_SUFFIX)
            else checkpoint
        )
        return base + DEAD_LETTER_SUFFIX
    return str(Path(DEFAULT_DEAD_LETTER).absolute())


def batches_in_flight(requests: int) -> int:
    """Concurrent ``write`` calls for ``requests`` concurrent requests.

    A batch is closed when its rows fill most of one request
    (:attr:`AzureSink.batch_bytes`), so it is usually sent as one request:
    one batch per request in flight.
    """
    return max(1, requests)


class AzureSink(Sink):
    name = "azure"

    def __init__(self, uploader: Uploader, *, max_in_flight: int = 4) -> None:
        self.uploader = uploader
        self.max_in_flight = max(1, max_in_flight)
        # One request's worth of JSON per batch (``[`` + rows + commas + ``]``): the
        # batcher closes a batch before the next chunk's rows would not fit.
        self.batch_bytes = uploader.settings.max_request_bytes - 2
        self.dead_letter_path = str(uploader.dead_letter) if uploader.dead_letter else None
        #: Notes of rows prepared on the reading thread (TimeGenerated fixed, rows cut).
        self._prepare_notes: list[str] = []

    @classmethod
    def from_config(cls, config: ForwardConfig) -> AzureSink:
        if not config.endpoint or not config.rule_id:
            raise DeliveryError(
                "Azure output needs --endpoint and --rule-id (AZURE_MONITOR_DATA_COLLECTION_ENDPOINT, "
                "AZURE_MONITOR_DATA_COLLECTION_RULE_ID)",
                fatal=True,
            )
        endpoint = config.endpoint.strip()
        if not endpoint.lower().startswith("https://"):
            raise DeliveryError(
                f"--endpoint must be the data collection endpoint's https:// URL (got {endpoint!r}); "
                "the SDK refuses to send a bearer token over plain http",
                fatal=True,
            )
        rule_id = config.rule_id.strip()
        if not rule_id.startswith("dcr-"):
            raise DeliveryError(
                f"--rule-id must be the DCR's immutable id, which starts with 'dcr-' (got {rule_id!r}); "
                "find it in the portal (DCR > JSON view > immutableId) or with "
                "`az monitor data-collection rule show --query immutableId`",
                fatal=True,
            )
        if config.credential not in CREDENTIAL_KINDS:
            raise DeliveryError(
                f"unknown --credential {config.credential!r}: choose one of {', '.join(CREDENTIAL_KINDS)}",
                fatal=True,
            )
        settings = UploadSettings(max_in_flight=max(1, config.max_in_flight))
        backoff = os.environ.get(BACKOFF_ENV, "").strip()
        if backoff:
            try:
                parts = [float(p) for p in backoff.split(",")]
                settings.backoff_base = parts[0]
                if len(parts) > 1:
                    settings.backoff_max = parts[1]
            except ValueError:
                raise DeliveryError(
                    f"{BACKOFF_ENV} must be BASE[,MAX] in seconds, e.g. 0.5,30 (got {backoff!r})",
                    fatal=True,
                ) from None
        uploader = Uploader(
            endpoint,
            rule_id,
            config.stream,
            credential=config.credential,
            dead_letter=os.path.abspath(config.dead_letter or default_dead_letter(config)),
            settings=settings,
        )
        return cls(uploader, max_in_flight=batches_in_flight(settings.max_in_flight))

    def row_encoder(self) -> RowEncoder:
        """The uploader's encoding of the usual row (time in the window, fits as is)."""
        return self.uploader.row_encoder()

    def prepare(self, records: Sequence[Record]) -> int:
        """Serialise the rows now, on the reading thread, and let their dicts go.

        Each record keeps its row as the exact bytes that will be sent
        (``Record.prepared``: most were made by :meth:`row_encoder` during
        the run's stats; the rest, fitted and time-checked, by the uploader
        here), and ``Record.row`` becomes an ``orjson.Fragment`` of those
        bytes: the wrap-mode spool's ``_json.dumps(row)`` still writes the
        same row, but a batch waiting for its turn no longer holds ~2 KB of
        Python objects per row (measured: peak RSS 85 -> 67 MB in
        benchmarks/azure.py). ``Record.columns`` is dropped too: this sink
        sends JSON, not columns. Returns the JSON bytes of the rows (with a
        comma each), the measure of :attr:`batch_bytes`.
        """
        if not records:
            return 0
        missing: list[Record] = []
        total = self._keep_prepared(records, missing)  # one pass: the usual case
        if missing:
            result = UploadResult()
            try:
                datas = self.uploader.encode_each([r.row for r in missing], result)
            except Exception:  # never fail here: write() encodes what is not prepared
                datas = []
            else:
                for r, data in zip(missing, datas, strict=True):
                    r.prepared = data
            for note in result.notes:
                if note not in self._prepare_notes:
                    self._prepare_notes.append(note)
            total += self._keep_prepared(missing, [])
        return total

    @staticmethod
    def _keep_prepared(records: Sequence[Record], missing: list[Record]) -> int:
        """Rows prepared as bytes become Fragments of them; the others go to ``missing``."""
        fragment = _FRAGMENT
        total = 0
        for r in records:
            data = r.prepared
            if type(data) is bytes:
                total += len(data) + 1
                r.columns = None
                if fragment is not None:
                    r.row = fragment(data)
            else:
                missing.append(r)
        return total

    def _encoded(self, records: Sequence[Record], result: UploadResult) -> list[bytes]:
        """Each record's row as sent: prepared bytes, else encoded here."""
        parts: list[bytes] = []
        missing: list[int] = []
        for i, r in enumerate(records):
            data = r.prepared
            if type(data) is bytes:
                parts.append(data)
            else:
                parts.append(b"")
                missing.append(i)
        if missing:
            encoded = self.uploader.encode_each([records[i].row for i in missing], result)
            for i, data in zip(missing, encoded, strict=True):
                parts[i] = data
        return parts

    def write(self, records: Sequence[Record]) -> WriteResult:
        encoded = UploadResult()
        parts = self._encoded(records, encoded)
        result = self.uploader.send_encoded(parts, deadline=lambda: self.deadline)
        result.add(encoded)
        notes = list(result.notes)
        for note in self._prepare_notes:
            if note not in notes:
                notes.append(note)
        if result.dead_lettered:
            notes.append(
                f"rows refused by Azure Monitor are kept in {self.dead_letter_path}; "
                f"send them again with: hal-logging-forward {self.dead_letter_path}"
            )
        return WriteResult(
            delivered=result.delivered, dead_lettered=result.dead_lettered, notes=notes
        )

    def close(self) -> None:
        self.uploader.close()
