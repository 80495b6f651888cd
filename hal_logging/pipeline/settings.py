"""Each component's own settings, with its own ``validate()``.

:class:`InputsConfig` (what is read and how), :class:`FiltersConfig`
(redaction and cost control), :class:`DeliveryConfig` (batching, drain,
checkpoints, the exit-status policy), :class:`ReportingConfig` (summary,
progress, cost estimates) and one config per sink (:data:`SinkConfig`). The
run's :class:`~hal_logging.pipeline.config.ForwardConfig` builds them from
its flat fields; a component reads, and checks, only its own.

A setting that cannot be used raises :class:`ConfigError` whose message says
what to write instead (the CLI prints it as a usage error). The checks are
about the settings themselves, whoever gives them: flags, a test, a program
embedding the forwarder.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from hal_logging.pipeline.outcome import EXIT_STATUS_POLICIES
from hal_logging.schema import LEVELS, STREAM_NAME

#: Analytics tier list price per GB (docs/facts.md §1).
DEFAULT_PRICE_PER_GB = 2.30


#: The default of the mapping settings: shared, so it is read-only.
_NO_MAPPING: Mapping[str, Any] = MappingProxyType({})


class ConfigError(ValueError):
    """A setting that cannot be used; the message says what to write instead."""


class SinkConfigError(ConfigError):
    """The configuration cannot produce a sink; the message says what to set."""


class InputsConfig(NamedTuple):
    """What is read (files, a followed file, a command, a container) and how it is framed."""

    files: tuple[str, ...] = ()
    follow: bool = False
    command: tuple[str, ...] = ()
    container: str | None = None
    input_format: str = "auto"
    input_stream: str = "unknown"
    resend: bool = False
    multiline_timeout: float = 1.0
    until_pid: int | None = None
    idle_exit: float | None = None
    raw_log: str | None = None
    raw_log_redacted: str | None = None
    stop_timeout: float = 10.0
    journal: str | None = None  # wrap mode: where the journal goes (default beside the spool)
    no_journal: bool = False
    resume_journal: str | None = None  # replay this journal instead of reading anything
    archive: str | None = None  # keep the exact bytes: a folder or a Blob Storage URL
    dry_run: bool = False

    @property
    def mode(self) -> str:
        """The source this asks for: a key of the assembly's ``SOURCES``."""
        if self.command:
            return "wrap"
        if self.container is not None:
            return "container"
        return "follow" if self.follow else "files"

    def validate(self) -> None:
        """One source, with only the settings that apply to it."""
        if self.command and self.files:
            raise ConfigError("give FILEs or a command after '--', not both")
        if self.container is not None:
            if not self.container.strip():
                raise ConfigError("--container needs a container name or id")
            if self.files or self.command or self.follow:
                raise ConfigError(
                    "--container reads one container's output: give no FILEs, no --follow and "
                    "no command after '--' (run one forwarder per container)"
                )
            if self.input_format not in ("auto", "docker-json"):
                raise ConfigError("--container reads Docker's own log format: drop --input-format")
        if self.resume_journal and (self.command or self.files or self.follow):
            raise ConfigError(
                "--resume-journal PATH replays a journal: give no FILE, --follow or -- CMD"
            )
        if (self.journal or self.no_journal) and not self.command:
            raise ConfigError("--journal and --no-journal only apply in wrap mode (-- CMD)")
        if self.journal and self.no_journal:
            raise ConfigError("give --journal PATH or --no-journal, not both")
        if self.archive:
            if self.follow:
                raise ConfigError("--archive keeps finished files or wrap mode's journal, not --follow")
            if self.no_journal:
                raise ConfigError("--archive in wrap mode archives the journal: drop --no-journal")
            if len(self.files) > 1:
                raise ConfigError("--archive makes one archive per task: give one FILE per run")
            if self.dry_run:
                raise ConfigError("--dry-run writes nothing: drop --archive")
        if (
            not self.command
            and not self.files
            and self.container is None
            and not self.resume_journal
        ):
            raise ConfigError(
                "nothing to forward: give FILE..., --follow FILE, -- CMD [ARG...] or --container NAME"
            )
        if self.follow and self.command:
            raise ConfigError("--follow reads a file; wrap mode (-- CMD) already forwards live")
        if self.follow and len(self.files) != 1:
            raise ConfigError("--follow takes exactly one FILE (run one forwarder per file)")
        if self.resend and (self.follow or self.command or self.container is not None):
            raise ConfigError(
                "--resend ships finished files written by hal-logging (dead-letter, spill or "
                "undelivered files): give them as FILE..., without --follow or -- CMD"
            )
        if (self.until_pid is not None or self.idle_exit is not None) and not self.follow:
            raise ConfigError("--until-pid and --idle-exit only apply with --follow")
        if self.raw_log and not self.command:
            raise ConfigError("--raw-log only applies in wrap mode (-- CMD)")
        if self.raw_log_redacted and not self.command:
            raise ConfigError("--raw-log-redacted only applies in wrap mode (-- CMD)")
        if self.multiline_timeout < 0 or self.stop_timeout < 0:
            raise ConfigError("--multiline-timeout and --stop-timeout must not be negative")


class FiltersConfig(NamedTuple):
    """Redaction and cost control: the filter chain between parsing and batching."""

    redact: bool = True
    redact_env: tuple[str, ...] = ()
    redact_secret_env_names: bool = True
    #: NAME=VALUE pairs the wrapped command (or container) is given: redacted too.
    command_env: Mapping[str, str] = _NO_MAPPING
    min_level: str | None = None
    logger_levels: Mapping[str, str] = _NO_MAPPING
    drop_message: tuple[str, ...] = ()
    drop_logger: tuple[str, ...] = ()
    sample: Mapping[str, float] = _NO_MAPPING
    fold_repeats: bool = True
    task_byte_budget: int | None = None

    def validate(self) -> None:
        """Ratios between 0 and 1, levels the table knows, a positive budget."""
        for k, ratio in self.sample.items():
            if not 0.0 <= ratio <= 1.0:
                raise ConfigError(f"--sample {k}={ratio:g}: the ratio must be between 0 and 1")
        for k, v in self.logger_levels.items():
            if v not in LEVELS:
                raise ConfigError(
                    f"--logger-level {k}={v}: LEVEL must be one of {', '.join(LEVELS)}"
                )
        if self.min_level is not None and self.min_level not in LEVELS:
            raise ConfigError(f"--min-level {self.min_level}: must be one of {', '.join(LEVELS)}")
        if self.task_byte_budget is not None and self.task_byte_budget < 1:
            raise ConfigError("--task-byte-budget must be positive")


class DeliveryConfig(NamedTuple):
    """Batching, the final drain, checkpoints, and what the exit status carries."""

    batch_rows: int = 5000
    batch_bytes: int = 1_000_000
    flush_interval: float = 1.0
    drain_timeout: float = 60.0
    checkpoint: str | None = None
    no_checkpoint: bool = False
    dry_run: bool = False
    exit_status: str = "auto"

    def validate(self) -> None:
        if self.batch_rows < 1 or self.batch_bytes < 1:
            raise ConfigError("--batch-rows and --batch-bytes must be at least 1")
        if self.flush_interval < 0 or self.drain_timeout < 0:
            raise ConfigError("--flush-interval and --drain-timeout must not be negative")
        if self.exit_status not in EXIT_STATUS_POLICIES:
            raise ConfigError(
                f"--exit-status {self.exit_status}: choose one of {', '.join(EXIT_STATUS_POLICIES)}"
            )


class ReportingConfig(NamedTuple):
    """What the forwarder says about its run: the summary, progress, cost estimates."""

    summary_json: str | None = None
    progress: bool | None = None
    quiet: bool = False
    dry_run: bool = False
    price_per_gb: float = DEFAULT_PRICE_PER_GB
    tasks_per_month: int = 1000

    def validate(self) -> None:
        if self.price_per_gb < 0:
            raise ConfigError("--price-per-gb must not be negative")
        if self.tasks_per_month < 1:
            raise ConfigError("--tasks-per-month must be at least 1")


class NullConfig(NamedTuple):
    """``--dry-run``: rows are counted, not sent."""

    def validate(self) -> None:
        return None


class SqliteConfig(NamedTuple):
    """The local workspace (``--db``; None: ``HAL_LOGGING_DB`` or ``./hal-logs.db``)."""

    db: str | None = None

    def validate(self) -> None:
        return None


class JsonlConfig(NamedTuple):
    """JSON lines to a file, or to stdout for ``-``."""

    output: str = "-"

    def validate(self) -> None:
        if not self.output:
            raise SinkConfigError("--sink jsonl needs --output PATH (or '-' for stdout)")


class AzureConfig(NamedTuple):
    """Azure Monitor's Logs Ingestion API: a data collection endpoint and rule."""

    endpoint: str | None = None
    rule_id: str | None = None
    stream: str = STREAM_NAME
    credential: str = "auto"
    max_in_flight: int = 4
    dead_letter: str | None = None

    def validate(self) -> None:
        """Both settings present (their shapes are checked when the sink is built:
        a wrong one is a destination that cannot be used, not a usage error)."""
        if not (self.endpoint and self.rule_id):
            raise SinkConfigError(
                "--sink azure needs --endpoint and --rule-id (or AZURE_MONITOR_DATA_COLLECTION_ENDPOINT "
                "and AZURE_MONITOR_DATA_COLLECTION_RULE_ID)"
            )


class OtlpConfig(NamedTuple):
    """An OpenTelemetry collector's OTLP/HTTP endpoint."""

    endpoint: str | None = None
    max_in_flight: int = 4

    def validate(self) -> None:
        if not self.endpoint:
            raise SinkConfigError(
                "--sink otlp needs --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)"
            )


SinkConfig = NullConfig | SqliteConfig | JsonlConfig | AzureConfig | OtlpConfig
"""One sink's own settings (the registry ``pipeline.sinks.SINKS`` builds each)."""


__all__ = [
    "DEFAULT_PRICE_PER_GB",
    "AzureConfig",
    "ConfigError",
    "DeliveryConfig",
    "FiltersConfig",
    "InputsConfig",
    "JsonlConfig",
    "NullConfig",
    "OtlpConfig",
    "ReportingConfig",
    "SinkConfig",
    "SinkConfigError",
    "SqliteConfig",
]
