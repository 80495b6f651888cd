"""Sinks: where rows go. ``make_sink`` picks one from the forwarder's config.

"auto" means Azure when both an endpoint and a rule id are configured
(docs/contract.md §4), otherwise the local workspace. Azure and OTLP sinks live in
their own modules and are imported only when chosen, so the local paths never
import the Azure or OpenTelemetry SDKs.
"""

from __future__ import annotations

from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import Sink

SINK_NAMES = ("auto", "sqlite", "jsonl", "azure", "otlp")


class SinkConfigError(ValueError):
    """The configuration cannot produce a sink; the message says what to set."""


def resolve_sink_name(config: ForwardConfig) -> str:
    """The concrete sink "auto" stands for (or the one asked for)."""
    if config.dry_run:
        return "dry-run"
    name = config.sink
    if name == "auto":
        if config.endpoint and config.rule_id:
            return "azure"
        if config.endpoint or config.rule_id:
            missing = (
                "--rule-id (AZURE_MONITOR_DATA_COLLECTION_RULE_ID)"
                if config.endpoint
                else ("--endpoint (AZURE_MONITOR_DATA_COLLECTION_ENDPOINT)")
            )
            raise SinkConfigError(
                f"Azure output needs both an endpoint and a rule id: set {missing}, "
                "or unset the other one to write to the local workspace"
            )
        return "sqlite"
    if name not in SINK_NAMES:
        raise SinkConfigError(f"unknown sink {name!r}: choose one of {', '.join(SINK_NAMES)}")
    return name


def make_sink(config: ForwardConfig) -> Sink:
    """Build the sink the config asks for (may raise SinkConfigError or DeliveryError)."""
    name = resolve_sink_name(config)
    if name == "dry-run":
        from hal_logging.pipeline.sinks.null import NullSink

        return NullSink()
    if name == "sqlite":
        from hal_logging.pipeline.sinks.sqlite import SqliteSink

        return SqliteSink(config.db)
    if name == "jsonl":
        from hal_logging.pipeline.sinks.jsonl import JsonlSink

        return JsonlSink(config.output)
    if name == "azure":
        if not (config.endpoint and config.rule_id):
            raise SinkConfigError(
                "--sink azure needs --endpoint and --rule-id (or AZURE_MONITOR_DATA_COLLECTION_ENDPOINT "
                "and AZURE_MONITOR_DATA_COLLECTION_RULE_ID)"
            )
        try:
            from hal_logging.pipeline.sinks.azure import AzureSink
        except ImportError as exc:
            raise SinkConfigError(
                f"the Azure sink is not available ({exc}); install it with: pip install 'hal-logging[azure]'"
            ) from exc
        return AzureSink.from_config(config)
    if name == "otlp":
        if not config.otlp_endpoint:
            raise SinkConfigError(
                "--sink otlp needs --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)"
            )
        try:
            from hal_logging.pipeline.sinks.otlp import OtlpSink
        except ImportError as exc:
            raise SinkConfigError(
                f"the OTLP sink is not available ({exc}); install it with: pip install 'hal-logging[otel]'"
            ) from exc
        return OtlpSink.from_config(config)
    raise SinkConfigError(f"unknown sink {name!r}")  # pragma: no cover - resolve_sink_name checks
