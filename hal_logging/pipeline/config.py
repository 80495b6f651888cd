"""Every setting of the forwarder, in one typed place, and each component's share of it.

The CLI (``hal_logging.cli.forward``) fills :class:`ForwardConfig` from flags
and environment. Each component reads its own part of it
(:mod:`hal_logging.pipeline.settings`: inputs, filters, delivery, reporting,
one config per sink), a small frozen config with its own ``validate()``.

Why a flat ``ForwardConfig`` with properties, and not one nested config:
the flat fields are what the command line, the tests and the programmatic
users write (``ForwardConfig(files=[...], sink="jsonl")``), and the runner
reads a handful of them on its hot path. The component configs are built
from them on demand, so a component sees (and validates) only its own
settings, and nothing that writes a ``ForwardConfig`` had to change.

Names follow what Fluent Bit / Vector users know (``flush_interval``,
``batch``, ``checkpoint``, ``dead_letter``). This module imports nothing of
the pipeline's components: every component may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hal_logging.pipeline.settings import (
    DEFAULT_PRICE_PER_GB,
    AzureConfig,
    ConfigError,
    DeliveryConfig,
    FiltersConfig,
    InputsConfig,
    JsonlConfig,
    NullConfig,
    OtlpConfig,
    ReportingConfig,
    SinkConfig,
    SqliteConfig,
)
from hal_logging.schema import STREAM_NAME

# The component configs live in (and are imported from) pipeline.settings;
# DEFAULT_PRICE_PER_GB is re-exported because the CLI's help text shows it.
__all__ = ["DEFAULT_PRICE_PER_GB", "ForwardConfig"]


@dataclass
class ForwardConfig:
    # --- mode -------------------------------------------------------------
    files: list[str] = field(default_factory=list)
    follow: bool = False
    command: list[str] = field(default_factory=list)  # wrap mode when non-empty
    container: str | None = None  # --container NAME_OR_ID: follow a Docker container

    # --- trusted context (column name -> value); None = not given ----------
    context: dict[str, str | None] = field(default_factory=dict)

    # --- input ------------------------------------------------------------
    input_format: str = "auto"  # auto | docker-json | docker-timestamps | raw
    input_stream: str = "unknown"  # stream of a file input: stdout | stderr | unknown
    # files mode: FILE was written by hal-logging (dead-letter, spill, undelivered):
    # keep each row's record_id, context and Properties.hal (never automatic)
    resend: bool = False
    multiline_timeout: float = 1.0  # seconds before an open traceback group is closed
    until_pid: int | None = None
    idle_exit: float | None = None
    raw_log: str | None = None  # wrap mode: tee the raw output here
    # wrap mode: seconds from the signal passed on to CMD to stopping it for good
    stop_timeout: float = 10.0
    # wrap mode: NAME=VALUE pairs the command is given (docker ``-e``/``--env``,
    # and the files of ``--env-file``); HAL_* ones fill trusted context not given
    # otherwise; values are redacted.
    command_env: dict[str, str] = field(default_factory=dict)
    raw_log_redacted: str | None = None  # wrap mode: the raw output, secrets replaced
    # wrap mode: which fact the exit status carries: auto | command | delivery
    exit_status: str = "auto"
    # warnings found while reading the command line (an unreadable --env-file)
    notes: list[str] = field(default_factory=list)

    # --- journal and archive (issue 16; hal_logging.pipeline.journal, hal_logging.archive)
    journal: str | None = None  # wrap mode: journal path (default beside the spool)
    no_journal: bool = False  # wrap mode: keep no journal
    resume_journal: str | None = None  # replay a journal: ship what was not delivered
    archive: str | None = None  # a folder or a Blob Storage container URL

    # --- sink ---------------------------------------------------------------
    sink: str = "auto"  # auto | sqlite | jsonl | azure | otlp
    db: str | None = None  # local workspace (default HAL_LOGGING_DB or ./hal-logs.db)
    output: str = "-"  # jsonl sink target
    endpoint: str | None = None  # Azure DCE (AZURE_MONITOR_DATA_COLLECTION_ENDPOINT)
    rule_id: str | None = None  # DCR immutable id (AZURE_MONITOR_DATA_COLLECTION_RULE_ID)
    stream: str = STREAM_NAME  # AZURE_MONITOR_STREAM_NAME
    credential: str = "auto"  # auto | managed-identity | service-principal | default
    max_in_flight: int = 4
    dead_letter: str | None = None  # refused rows, JSON lines (default beside the checkpoint)
    otlp_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT

    # --- delivery -------------------------------------------------------------
    checkpoint: str | None = None  # default: beside the input
    no_checkpoint: bool = False
    batch_rows: int = 5000
    batch_bytes: int = 1_000_000
    flush_interval: float = 1.0
    drain_timeout: float = 60.0

    # --- output of the forwarder itself -------------------------------------
    summary_json: str | None = None
    progress: bool | None = None  # None: on a terminal only
    quiet: bool = False

    # --- redaction (issue 7) ------------------------------------------------
    redact: bool = True
    redact_env: list[str] = field(default_factory=list)
    redact_secret_env_names: bool = True

    # --- cost control (issue 7) ---------------------------------------------
    min_level: str | None = None
    logger_levels: dict[str, str] = field(default_factory=dict)
    drop_message: list[str] = field(default_factory=list)  # regexes
    drop_logger: list[str] = field(default_factory=list)  # regexes
    sample: dict[str, float] = field(default_factory=dict)  # logger -> keep ratio
    fold_repeats: bool = True
    task_byte_budget: int | None = None
    dry_run: bool = False
    price_per_gb: float = DEFAULT_PRICE_PER_GB
    tasks_per_month: int = 1000

    # --- the components' own configs ------------------------------------------

    @property
    def inputs(self) -> InputsConfig:
        return InputsConfig(
            files=tuple(self.files),
            follow=self.follow,
            command=tuple(self.command),
            container=self.container,
            input_format=self.input_format,
            input_stream=self.input_stream,
            resend=self.resend,
            multiline_timeout=self.multiline_timeout,
            until_pid=self.until_pid,
            idle_exit=self.idle_exit,
            raw_log=self.raw_log,
            raw_log_redacted=self.raw_log_redacted,
            stop_timeout=self.stop_timeout,
            journal=self.journal,
            no_journal=self.no_journal,
            resume_journal=self.resume_journal,
            archive=self.archive,
            dry_run=self.dry_run,
        )

    @property
    def filters(self) -> FiltersConfig:
        return FiltersConfig(
            redact=self.redact,
            redact_env=tuple(self.redact_env),
            redact_secret_env_names=self.redact_secret_env_names,
            command_env=self.command_env,
            min_level=self.min_level,
            logger_levels=self.logger_levels,
            drop_message=tuple(self.drop_message),
            drop_logger=tuple(self.drop_logger),
            sample=self.sample,
            fold_repeats=self.fold_repeats,
            task_byte_budget=self.task_byte_budget,
        )

    @property
    def delivery(self) -> DeliveryConfig:
        return DeliveryConfig(
            batch_rows=self.batch_rows,
            batch_bytes=self.batch_bytes,
            flush_interval=self.flush_interval,
            drain_timeout=self.drain_timeout,
            checkpoint=self.checkpoint,
            no_checkpoint=self.no_checkpoint,
            dry_run=self.dry_run,
            exit_status=self.exit_status,
        )

    @property
    def reporting(self) -> ReportingConfig:
        return ReportingConfig(
            summary_json=self.summary_json,
            progress=self.progress,
            quiet=self.quiet,
            dry_run=self.dry_run,
            price_per_gb=self.price_per_gb,
            tasks_per_month=self.tasks_per_month,
        )

    def sink_config(self, name: str) -> SinkConfig:
        """The settings of sink ``name`` (a resolved name, not "auto")."""
        if name == "sqlite":
            return SqliteConfig(self.db)
        if name == "jsonl":
            return JsonlConfig(self.output)
        if name == "azure":
            return AzureConfig(
                self.endpoint,
                self.rule_id,
                self.stream,
                self.credential,
                self.max_in_flight,
                self.dead_letter,
            )
        if name == "otlp":
            return OtlpConfig(self.otlp_endpoint, self.max_in_flight)
        return NullConfig()

    def validate(self) -> None:
        """Every component's own checks, then the few that span two of them.

        The sink's settings are checked when the sink is chosen
        (``pipeline.sinks.make_sink``): "auto" is resolved only at run time.
        """
        inputs = self.inputs
        inputs.validate()
        if self.raw_log_redacted and not self.redact:
            raise ConfigError(
                "--raw-log-redacted needs redaction: drop --no-redact, or use --raw-log"
            )
        if self.exit_status != "auto" and inputs.mode not in ("wrap", "container"):
            raise ConfigError(
                "--exit-status only applies in wrap mode (-- CMD) or with --container: "
                "other modes have no command status"
            )
        self.filters.validate()
        self.delivery.validate()
        self.reporting.validate()
