"""``--sink otlp``: rows as OpenTelemetry log records over OTLP/HTTP (protobuf).

For users who already run an OpenTelemetry Collector or a backend other than
Azure. The mapping from row to log record is :mod:`hal_logging.otel`'s (the
same the container-side handler uses).

Delivery is synchronous: :meth:`OtlpSink.write` encodes the batch and calls
the SDK's ``OTLPLogExporter.export`` itself, which returns only after the
collector answered (it retries 429/502/503/504 with backoff, honouring
``Retry-After``, within its timeout). Success means a 2xx answer, and only then
does ``write`` return, so the forwarder's checkpoint never passes a row the
collector has not taken. Any failure raises :class:`DeliveryError` and the rows
are kept for the next attempt. The SDK's ``BatchLogRecordProcessor`` is not
used here: it drops records when its queue is full and reports nothing.

Endpoint: ``--otlp-endpoint`` (a base URL like ``http://collector:4318`` gets
``/v1/logs`` appended; a URL already ending in ``/v1/logs`` is used as is),
else ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` (as is), else
``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/logs``), else the OTel default
``http://localhost:4318/v1/logs``. Headers, timeout, compression and TLS
files come from the standard ``OTEL_EXPORTER_OTLP_*`` variables.

A collector's "partial success" answer (some records rejected) is a 2xx and
counts as delivered: the SDK exporter does not expose it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hal_logging.otel import INSTALL_HINT, make_resource, row_context, to_readable
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import DeliveryError, Record, Sink, WriteResult
from hal_logging.schema import CONTEXT_COLUMNS

DEFAULT_ENDPOINT = "http://localhost:4318/v1/logs"
LOGS_PATH = "/v1/logs"


def resolve_endpoint(flag: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The full logs URL from the flag or the standard variables (see the module docstring)."""
    env = os.environ if environ is None else environ
    if flag:
        return flag if flag.rstrip("/").endswith(LOGS_PATH) else flag.rstrip("/") + LOGS_PATH
    if env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"]
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + LOGS_PATH
    return DEFAULT_ENDPOINT


class OtlpSink(Sink):
    """Ships rows to an OTLP/HTTP logs endpoint; see the module docstring."""

    name = "otlp"

    def __init__(
        self, endpoint: str, *, timeout: float | None = None, max_in_flight: int = 1
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs.export import LogRecordExportResult
        except ImportError as err:
            raise DeliveryError(
                f"--sink otlp needs the OpenTelemetry SDK ({err}); {INSTALL_HINT}", fatal=True
            ) from err
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_in_flight = max(1, max_in_flight)
        self._exporter_class = OTLPLogExporter
        self._success = LogRecordExportResult.SUCCESS
        self._local = threading.local()
        self._exporters: list[Any] = []
        self._lock = threading.Lock()
        self._resources: dict[tuple[str, ...], Any] = {}

    @classmethod
    def from_config(cls, config: ForwardConfig) -> OtlpSink:
        return cls(
            resolve_endpoint(config.otlp_endpoint), max_in_flight=min(config.max_in_flight, 4)
        )

    def _exporter(self) -> Any:
        """One exporter (one HTTP session) per writing thread."""
        exporter = getattr(self._local, "exporter", None)
        if exporter is None:
            exporter = self._exporter_class(endpoint=self.endpoint, timeout=self.timeout)
            self._local.exporter = exporter
            with self._lock:
                self._exporters.append(exporter)
        return exporter

    def _resource(self, row: Mapping[str, Any]) -> Any:
        key = row_context(row)
        resource = self._resources.get(key)
        if resource is None:
            resource = make_resource(dict(zip((c.name for c in CONTEXT_COLUMNS), key, strict=True)))
            with self._lock:
                self._resources[key] = resource
        return resource

    def _readable(self, row: Mapping[str, Any], now: int) -> Any:
        try:
            return to_readable(row, self._resource(row), now)
        except Exception as err:  # a row we cannot map still goes out, as JSON text
            from hal_logging import _json

            fallback = {
                "TimeGenerated": row.get("TimeGenerated", ""),
                "Level": row.get("Level", "INFO"),
                "Message": _json.dumps_str(row),
                "LoggerName": "hal_logging.otlp",
                "Properties": {"otlp_error": f"{type(err).__name__}: {err}"},
            }
            return to_readable(fallback, self._resource({}), now)

    def write(self, records: Sequence[Record]) -> WriteResult:
        if not records:
            return WriteResult()
        now = time.time_ns()
        batch = [self._readable(r.row, now) for r in records]
        try:
            result = self._exporter().export(batch)
        except Exception as err:  # the exporter should not raise; never lose the batch if it does
            raise DeliveryError(
                f"OTLP export to {self.endpoint} failed ({type(err).__name__}: {err}); "
                "the rows are kept and sent again"
            ) from err
        if result != self._success:
            raise DeliveryError(
                f"the OTLP endpoint {self.endpoint} did not accept {len(records)} rows "
                "(see the exporter's message above); check that a collector listens there "
                "(--otlp-endpoint / OTEL_EXPORTER_OTLP_ENDPOINT); the rows are kept and sent again"
            )
        return WriteResult(delivered=len(records))

    def close(self) -> None:
        with self._lock:
            exporters, self._exporters = self._exporters, []
        for exporter in exporters:
            try:
                exporter.shutdown()
            except Exception:
                pass
