"""Sinks: where rows go. :data:`SINKS` names each one; ``make_sink`` builds the one asked for.

"auto" means Azure when both an endpoint and a rule id are configured
(docs/contract.md §4), otherwise the local workspace. Each entry of
:data:`SINKS` takes its own settings from the run's config (a
:data:`~hal_logging.pipeline.config.SinkConfig`, validated before anything is
built) and imports its module only when chosen, so the local paths never
import the Azure or OpenTelemetry SDKs. A new sink is a module here and one
entry in :data:`SINKS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import Sink
from hal_logging.pipeline.settings import (
    AzureConfig,
    JsonlConfig,
    OtlpConfig,
    SinkConfig,
    SinkConfigError,
    SqliteConfig,
)

__all__ = ["SINKS", "SINK_NAMES", "SinkConfigError", "SinkKind", "make_sink", "resolve_sink_name"]


@dataclass(frozen=True)
class SinkKind:
    """One sink: how to build it from its settings (and, for defaults derived
    from the inputs, such as the dead-letter file beside a checkpoint, the
    run's config)."""

    name: str
    build: Callable[[Any, ForwardConfig], Sink]


def _null(settings: Any, config: ForwardConfig) -> Sink:
    from hal_logging.pipeline.sinks.null import NullSink

    return NullSink()


def _sqlite(settings: SqliteConfig, config: ForwardConfig) -> Sink:
    from hal_logging.pipeline.sinks.sqlite import SqliteSink

    return SqliteSink(settings.db)


def _jsonl(settings: JsonlConfig, config: ForwardConfig) -> Sink:
    from hal_logging.pipeline.sinks.jsonl import JsonlSink

    return JsonlSink(settings.output)


@contextlib.contextmanager
def _needs_extra(what: str, extra: str) -> Iterator[None]:
    """An import in the block that fails is a SinkConfigError naming the extra to install."""
    try:
        yield
    except ImportError as exc:
        raise SinkConfigError(
            f"the {what} sink is not available ({exc}); install it with: pip install 'hal-logging[{extra}]'"
        ) from exc


def _azure(settings: AzureConfig, config: ForwardConfig) -> Sink:
    with _needs_extra("Azure", "azure"):
        from hal_logging.pipeline.sinks.azure import AzureSink
    return AzureSink.from_config(config)


def _otlp(settings: OtlpConfig, config: ForwardConfig) -> Sink:
    with _needs_extra("OTLP", "otel"):
        from hal_logging.pipeline.sinks.otlp import OtlpSink
    return OtlpSink.from_config(config)


#: Every sink by the name ``--sink`` gives ("dry-run" is ``--dry-run``'s).
SINKS: dict[str, SinkKind] = {
    "sqlite": SinkKind("sqlite", _sqlite),
    "jsonl": SinkKind("jsonl", _jsonl),
    "azure": SinkKind("azure", _azure),
    "otlp": SinkKind("otlp", _otlp),
    "dry-run": SinkKind("dry-run", _null),
}

#: ``--sink`` choices.
SINK_NAMES = ("auto", *(n for n in SINKS if n != "dry-run"))


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
    settings: SinkConfig = config.sink_config(name)
    settings.validate()
    return SINKS[name].build(settings, config)
