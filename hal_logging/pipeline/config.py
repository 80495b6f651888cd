"""Every setting of the forwarder, in one typed place.

The CLI (``hal_logging.cli.forward``) fills this from flags and environment; the
pipeline stages read it. Names follow what Fluent Bit / Vector users know
(``flush_interval``, ``batch``, ``checkpoint``, ``dead_letter``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hal_logging.schema import STREAM_NAME

#: Analytics tier list price per GB (docs/facts.md §1).
DEFAULT_PRICE_PER_GB = 2.30


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
