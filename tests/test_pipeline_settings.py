"""Each component's own config (pipeline.settings), and the registries that build from them.

The checks are the components': they hold for a ForwardConfig built by a
program as much as for one from flags (tests/test_forward_cli.py covers the
command line's wording of the same refusals).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.filters import build_filters
from hal_logging.pipeline.filters.fold import FoldFilter
from hal_logging.pipeline.filters.levels import LevelFilter
from hal_logging.pipeline.filters.redact import RedactFilter
from hal_logging.pipeline.settings import (
    AzureConfig,
    ConfigError,
    DeliveryConfig,
    FiltersConfig,
    InputsConfig,
    JsonlConfig,
    OtlpConfig,
    ReportingConfig,
    SinkConfigError,
    SqliteConfig,
)
from hal_logging.pipeline.sinks import SINK_NAMES, SINKS, make_sink
from hal_logging.pipeline.sinks.jsonl import JsonlSink
from hal_logging.pipeline.sinks.null import NullSink
from hal_logging.pipeline.sinks.sqlite import SqliteSink
from hal_logging.pipeline.sources.registry import SOURCES


def test_forward_config_hands_each_component_its_own_settings() -> None:
    cfg = ForwardConfig(
        files=["a.log"],
        sample={"noisy": 0.5},
        batch_rows=10,
        quiet=True,
        endpoint="https://dce",
        rule_id="dcr-1",
        max_in_flight=2,
    )
    assert cfg.inputs == InputsConfig(files=("a.log",))
    assert cfg.inputs.mode == "files"
    assert cfg.filters.sample == {"noisy": 0.5}
    assert cfg.delivery.batch_rows == 10
    assert cfg.reporting.quiet is True
    assert cfg.sink_config("azure") == AzureConfig("https://dce", "dcr-1", max_in_flight=2)
    assert cfg.sink_config("sqlite") == SqliteConfig(None)
    assert cfg.sink_config("jsonl") == JsonlConfig("-")
    cfg.validate()


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        (ForwardConfig(files=["a"]), "files"),
        (ForwardConfig(files=["a"], follow=True), "follow"),
        (ForwardConfig(command=["true"]), "wrap"),
        (ForwardConfig(container="c1"), "container"),
    ],
)
def test_every_mode_has_a_source(config: ForwardConfig, mode: str) -> None:
    assert config.inputs.mode == mode
    assert mode in SOURCES


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (InputsConfig(), "nothing to forward"),
        (InputsConfig(files=("a",), command=("x",)), "not both"),
        (InputsConfig(files=("a", "b"), follow=True), "exactly one FILE"),
        (InputsConfig(container=" "), "needs a container name"),
        (InputsConfig(container="c", input_format="raw"), "drop --input-format"),
        (InputsConfig(files=("a",), until_pid=1), "only apply with --follow"),
        (InputsConfig(files=("a",), raw_log="r"), "only applies in wrap mode"),
        (InputsConfig(command=("x",), resend=True), "--resend ships finished files"),
        (FiltersConfig(sample={"x": 1.5}), "between 0 and 1"),
        (FiltersConfig(logger_levels={"x": "LOUD"}), "LEVEL must be one of"),
        (FiltersConfig(task_byte_budget=0), "must be positive"),
        (DeliveryConfig(batch_rows=0), "at least 1"),
        (DeliveryConfig(exit_status="sometimes"), "choose one of"),
        (ReportingConfig(tasks_per_month=0), "at least 1"),
        (AzureConfig(endpoint="https://dce"), "--sink azure needs --endpoint and --rule-id"),
        (OtlpConfig(), "--sink otlp needs --otlp-endpoint"),
        (JsonlConfig(""), "--sink jsonl needs --output"),
    ],
)
def test_a_component_refuses_a_setting_it_cannot_use(settings: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("-", r"\-")):
        settings.validate()  # type: ignore[attr-defined]


def test_settings_that_span_two_components_are_checked_by_the_run() -> None:
    with pytest.raises(ConfigError, match="needs redaction"):
        ForwardConfig(command=["x"], raw_log_redacted="r", redact=False).validate()
    with pytest.raises(ConfigError, match="no command status"):
        ForwardConfig(files=["a"], exit_status="command").validate()


def test_sinks_registry_builds_the_sink_asked_for(tmp_path: Path) -> None:
    assert set(SINK_NAMES) == {"auto", *SINKS} - {"dry-run"}
    sink = make_sink(ForwardConfig(sink="jsonl", output=str(tmp_path / "out.jsonl")))
    assert isinstance(sink, JsonlSink)
    sink.close()
    sink = make_sink(ForwardConfig(db=str(tmp_path / "w.db")))
    assert isinstance(sink, SqliteSink)
    sink.close()
    assert isinstance(make_sink(ForwardConfig(dry_run=True, sink="azure")), NullSink)
    # A sink's own settings are checked before its module is imported.
    with pytest.raises(SinkConfigError, match="--otlp-endpoint"):
        make_sink(ForwardConfig(sink="otlp"))


def test_optional_hooks_are_declared_on_the_base_classes() -> None:
    chain = build_filters(ForwardConfig(min_level="INFO"), {"RunID": "r"})
    by_type = {type(f): f for f in chain}
    assert by_type[FoldFilter].holds_records() and not by_type[LevelFilter].holds_records()
    assert by_type[RedactFilter].prescans() and not by_type[FoldFilter].prescans()
    assert by_type[LevelFilter].held_starts() == {}
    assert list(by_type[LevelFilter].notes) == []
    assert not NullSink.prepares() and not NullSink.encodes_rows()
