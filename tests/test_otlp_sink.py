"""The OTLP output against a local OTLP/HTTP receiver that decodes the protobuf payloads."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from hal_logging.otel import SEVERITY_NUMBERS, flatten, parse_time_ns, resource_attributes
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import DeliveryError, Record
from hal_logging.pipeline.sinks.otlp import DEFAULT_ENDPOINT, OtlpSink, resolve_endpoint
from hal_logging.schema import LEVELS
from tests.forward_helpers import agent_row
from tests.otlp_helpers import Receiver, otlp_receiver

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


def make_record(i: int, level: str = "INFO", task: str = "task-1", **props: Any) -> Record:
    row = agent_row(
        f"2024-05-01T12:00:{i % 60:02d}.{i:06d}Z",
        level,
        f"message {i}",
        "agent.loop",
        "run-7",
        task,
        Benchmark="swebench",
        AgentName="my-agent",
        VMName="vm-3",
        ExecutionMode="docker",
        ExecutedBy="alice",
    )
    row["Properties"] = {
        "hal": {"stream": "stdout", "record_id": f"rid-{i}", "format": "wire"},
        **props,
    }
    return Record(row=row, stream="stdout", start=i * 10, end=i * 10 + 10, source="s")


def test_every_row_arrives_with_severity_body_attributes_and_trace_ids(receiver: Receiver) -> None:
    records = [
        make_record(
            i,
            LEVELS[i % 5],
            trace_id=TRACE,
            span_id=SPAN,
            step=i,
            tool={"name": "bash", "args": ["ls", "-l"]},
            exception={
                "type": "ValueError",
                "message": "bad",
                "stacktrace": "Traceback ...\nValueError: bad",
            },
        )
        for i in range(50)
    ]
    sink = OtlpSink(receiver.url + "/v1/logs")
    try:
        result = sink.write(records)
    finally:
        sink.close()
    assert result.delivered == 50
    got = receiver.by_body()
    assert len(got) == 50
    for i, r in enumerate(records):
        lr = got[f"message {i}"]
        assert lr["severity_number"] == SEVERITY_NUMBERS[r.row["Level"]]
        assert lr["severity_text"] == r.row["Level"]
        assert lr["trace_id"] == TRACE and lr["span_id"] == SPAN
        assert lr["time_unix_nano"] == parse_time_ns(r.row["TimeGenerated"])
        attrs = lr["attributes"]
        assert attrs["hal.record_id"] == f"rid-{i}"
        assert attrs["hal.stream"] == "stdout"
        assert attrs["step"] == i
        assert attrs["tool.name"] == "bash" and attrs["tool.args"] == ["ls", "-l"]
        assert attrs["exception.type"] == "ValueError"
        assert attrs["exception.stacktrace"].endswith("ValueError: bad")
        assert attrs["logger.name"] == "agent.loop"
        assert "trace_id" not in attrs
        assert lr["scope"] == "agent.loop"
        res = lr["resource"]
        assert res["service.name"] == "my-agent"
        assert res["hal.run_id"] == "run-7" and res["hal.task_id"] == "task-1"
        assert res["hal.benchmark"] == "swebench" and res["host.name"] == "vm-3"


def test_resources_follow_the_rows_context(receiver: Receiver) -> None:
    sink = OtlpSink(receiver.url)  # a base URL gets /v1/logs
    sink.endpoint = resolve_endpoint(receiver.url)
    sink.write([make_record(1, task="a"), make_record(2, task="b"), make_record(3, task="a")])
    sink.close()
    tasks = {r["body"]: r["resource"]["hal.task_id"] for r in receiver.records}
    assert tasks == {"message 1": "a", "message 2": "b", "message 3": "a"}


def test_odd_values_still_arrive(receiver: Receiver) -> None:
    rec = make_record(
        1, big=2**80, nested={"a": {"b": {"c": {"d": 1}}}}, mixed=[1, "x", {"k": 2}, None], empty={}
    )
    rec.row["Properties"]["trace_id"] = "not-hex"
    rec.row["TimeGenerated"] = "garbage"
    rec.row["Level"] = "LOUD"
    sink = OtlpSink(receiver.url + "/v1/logs")
    sink.write([rec])
    sink.close()
    (lr,) = receiver.records
    attrs = lr["attributes"]
    assert attrs["big"] == str(2**80)
    assert attrs["nested.a.b.c"] == '{"d":1}'
    assert attrs["mixed"] == [1, "x", '{"k":2}', None]
    assert attrs["empty"] == "{}"
    assert attrs["trace_id"] == "not-hex" and lr["trace_id"] == ""
    assert lr["severity_number"] == 9 and lr["time_unix_nano"] == 0


def test_retries_a_busy_collector_then_delivers(receiver: Receiver) -> None:
    receiver.fail_next(2, 503)
    sink = OtlpSink(receiver.url + "/v1/logs", timeout=10)
    assert sink.write([make_record(1)]).delivered == 1
    sink.close()
    assert receiver.requests == 3
    assert len(receiver.records) == 1


def test_refusal_raises_delivery_error_and_nothing_is_claimed(receiver: Receiver) -> None:
    receiver.fail_next(1, 400)
    sink = OtlpSink(receiver.url + "/v1/logs")
    with pytest.raises(DeliveryError, match="did not accept 2 rows"):
        sink.write([make_record(1), make_record(2)])
    assert sink.write([make_record(1), make_record(2)]).delivered == 2  # the retry by the runner
    sink.close()


def test_no_collector_raises_delivery_error() -> None:
    with otlp_receiver() as r:
        url = r.url
    sink = OtlpSink(url + "/v1/logs", timeout=2)
    with pytest.raises(DeliveryError, match="collector"):
        sink.write([make_record(1)])
    sink.close()


def test_endpoint_resolution() -> None:
    assert resolve_endpoint("http://c:4318") == "http://c:4318/v1/logs"
    assert resolve_endpoint("http://c:4318/v1/logs") == "http://c:4318/v1/logs"
    assert (
        resolve_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://e:4318/"})
        == "http://e:4318/v1/logs"
    )
    assert (
        resolve_endpoint(None, {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://l/x"}) == "http://l/x"
    )
    assert resolve_endpoint(None, {}) == DEFAULT_ENDPOINT
    sink = OtlpSink.from_config(ForwardConfig(sink="otlp", otlp_endpoint="http://127.0.0.1:1"))
    assert sink.endpoint == "http://127.0.0.1:1/v1/logs"
    sink.close()


def test_resource_and_flatten_helpers() -> None:
    assert resource_attributes({"RunID": "r", "AgentName": ""}) == {
        "service.name": "hal-agent",
        "hal.run_id": "r",
    }
    assert flatten({"hal": {"claimed": {"RunID": "x"}}}) == {"hal.claimed.RunID": "x"}


def test_container_handler_exports_redacted_rows_with_trace_context(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from hal_logging.otel import install_otel_handler

    secret = "sk-" + "Q" * 32
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    logger = logging.getLogger("test.otel.container")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = install_otel_handler(logger, {"RunID": "run-9", "TaskID": "t-9", "AgentName": "ag"})
    assert handler is not None
    try:
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("step") as span:
            ctx = span.get_span_context()
            logger.warning("calling with key %s", secret, extra={"attempt": 2})
        try:
            raise RuntimeError(f"auth failed for {secret}")
        except RuntimeError:
            logger.exception("boom")
        otel_internal = logging.getLogger("opentelemetry.test.internal")
        otel_internal.addHandler(handler)
        otel_internal.warning("internal message: never exported (it would feed back)")
        logger.info("last")
        handler.flush()
        got = receiver.wait_for(3)
    finally:
        otel_internal.removeHandler(handler)
        logger.removeHandler(handler)
        handler.close()
    assert secret not in repr(got)
    assert len(got) == 3 and not any("internal" in r["body"] for r in got)
    by_body = {r["body"]: r for r in got}
    warn = by_body["calling with key [REDACTED:env:OPENAI_API_KEY]"]
    assert warn["severity_number"] == 13
    assert warn["trace_id"] == format(ctx.trace_id, "032x")
    assert warn["span_id"] == format(ctx.span_id, "016x")
    assert warn["attributes"]["attempt"] == 2
    assert warn["resource"]["hal.run_id"] == "run-9"
    err = by_body["boom"]
    assert err["severity_number"] == 17
    assert err["attributes"]["exception.type"] == "RuntimeError"
    assert "[REDACTED:env:OPENAI_API_KEY]" in err["attributes"]["exception.stacktrace"]


def test_no_endpoint_no_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    from hal_logging.otel import install_otel_handler

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", raising=False)
    assert install_otel_handler(logging.getLogger("x"), {}) is None


def test_import_hal_logging_does_not_load_the_sdk() -> None:
    code = (
        "import sys, hal_logging, hal_logging.otel, hal_logging.pipeline.sinks.otlp; "
        "print([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
