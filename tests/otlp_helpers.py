"""A local OTLP/HTTP logs receiver on loopback, decoding protobuf with opentelemetry-proto.

Stands in for an OpenTelemetry Collector: ``POST /v1/logs`` with an
``ExportLogsServiceRequest`` (optionally gzip), answered with an
``ExportLogsServiceResponse``. Every decoded log record is kept in
``receiver.records`` as a plain dict (resource and scope included), so tests
can check severity, body, attributes and trace ids of every row. ``fail_next``
makes the next N requests answer with a given status, to test retries.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


@dataclass
class Receiver:
    url: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    fail: list[int] = field(default_factory=list)  # statuses for the next requests
    lock: threading.Condition = field(default_factory=threading.Condition)

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.lock:
            self.fail.extend([status] * n)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``n`` records arrived (deadline, no fixed sleep)."""
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.records) >= n, timeout):
                raise AssertionError(f"expected {n} OTLP records, got {len(self.records)}")
            return list(self.records)

    def by_body(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {r["body"]: r for r in self.records}

    def ingest(self, body: bytes) -> None:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        out = []
        for rl in request.resource_logs:
            resource = {kv.key: any_value(kv.value) for kv in rl.resource.attributes}
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    out.append(
                        {
                            "resource": resource,
                            "scope": sl.scope.name,
                            "time_unix_nano": lr.time_unix_nano,
                            "observed_time_unix_nano": lr.observed_time_unix_nano,
                            "severity_number": lr.severity_number,
                            "severity_text": lr.severity_text,
                            "body": any_value(lr.body),
                            "attributes": {kv.key: any_value(kv.value) for kv in lr.attributes},
                            "trace_id": lr.trace_id.hex(),
                            "span_id": lr.span_id.hex(),
                        }
                    )
        with self.lock:
            self.records.extend(out)
            self.lock.notify_all()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.requests += 1
                status = receiver.fail.pop(0) if receiver.fail else 200
            if self.path != "/v1/logs":
                status = 404
            if status == 200:
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    status = 415
                else:
                    try:
                        receiver.ingest(body)
                    except Exception:
                        status = 400
            payload = ExportLogsServiceResponse().SerializeToString() if status == 200 else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            if status in (429, 503):
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
