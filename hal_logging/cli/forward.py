"""``hal-logging-forward``: ship a container's output, with nothing lost (docs/contract.md §4).

Three modes::

    hal-logging-forward [OPTIONS] FILE...             # finished files (seed: Option B)
    hal-logging-forward --follow [OPTIONS] FILE       # a growing file (seed: Option A)
    hal-logging-forward [OPTIONS] -- CMD [ARG...]     # run CMD, forward its output live
    hal-logging-forward [OPTIONS] --container NAME    # follow a Docker container to its exit

This module only turns flags and environment into a
:class:`~hal_logging.pipeline.config.ForwardConfig` (whose components check
their own settings: a refused one is a usage error) and hands it to
:func:`hal_logging.pipeline.assemble.run_forward`, which builds the source,
sink and filters, runs the :class:`~hal_logging.pipeline.runner.Runner` and
prints the summary. Errors a user can fix are one line on stderr saying what
to do, never a traceback.

Exit status (defined once, in :mod:`hal_logging.pipeline.outcome`): 0 every
record read was delivered; 75 some were not (stderr and ``--summary-json`` say
how many and where they are kept: the input file and its checkpoint, a
dead-letter file, or wrap mode's spool file; a rerun resumes; ship a
dead-letter or spool file with ``--resend FILE``, which keeps the rows' record
ids so those already delivered are not stored twice); 73 the destination
cannot be used (nothing shipped); 2 usage error (including an Azure VM without
ingestion settings: the local workspace only when asked for); 1 an input could
not be read. In wrap mode 127 means the command was not found and 126 that it
cannot be executed (a row says which), and ``--exit-status`` chooses which
fact the status carries: ``auto`` (default) CMD's own status (128+N if a signal
N killed it) when delivery is complete, else 75; ``command`` always CMD's;
``delivery`` 0/73/75 whatever CMD returned. The summary JSON holds both.
Container mode (``--container``) is the same with the container's exit
status; a container that is gone, or a daemon that does not answer, is 1.

Errors are never silent: ``-q`` hides progress and summaries, not a failure's cause.
Checkpoints belong to their destination (:mod:`hal_logging.pipeline.destination`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from hal_logging import schema
from hal_logging.cli._types import byte_size, float_at_least, int_at_least
from hal_logging.pipeline.assemble import PROG, run_forward
from hal_logging.pipeline.assemble import eprint as _eprint
from hal_logging.pipeline.config import DEFAULT_PRICE_PER_GB, ForwardConfig
from hal_logging.pipeline.outcome import (
    EXIT_DESTINATION,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_STATUS_POLICIES,
    EXIT_UNDELIVERED,
    EXIT_USAGE,
)
from hal_logging.pipeline.parsing import INPUT_FORMATS
from hal_logging.pipeline.settings import ConfigError
from hal_logging.pipeline.sinks import SINK_NAMES
from hal_logging.pipeline.sources.command_env import parse_command_env, read_env_file
from hal_logging.pipeline.spool import Spool as _Spool  # noqa: F401 - tests import it here

LEVEL_CHOICES = schema.LEVELS

EPILOG = """\
where rows go:
  Azure Monitor when an endpoint and a rule id are set (--endpoint/--rule-id or
  AZURE_MONITOR_DATA_COLLECTION_ENDPOINT/AZURE_MONITOR_DATA_COLLECTION_RULE_ID),
  otherwise the local workspace (--db, HAL_LOGGING_DB, default ./hal-logs.db),
  readable with `hal-logging query`. --sink jsonl writes JSON lines instead.
  On an Azure VM without those settings the forwarder refuses (exit 2) unless
  the local workspace is asked for (--sink sqlite, --db or HAL_LOGGING_DB).
  A checkpoint belongs to its destination: the same FILE shipped to another
  destination is shipped whole; a rerun to the same one resumes.

context (trusted: the container cannot override it):
  flags, then the environment (HAL_RUN_ID, HAL_TASK_ID, HAL_BENCHMARK,
  HAL_AGENT_NAME, HAL_VM_NAME, HAL_EXECUTION_MODE, EXECUTED_BY, HAL_LOG_TYPE),
  then in wrap mode the command's own `-e NAME=VALUE` / `--env NAME=VALUE`
  and the files of its `--env-file FILE` (their values are redacted too);
  in container mode the container's environment (`docker inspect`).

--container NAME_OR_ID (needs: pip install 'hal-logging[docker]'):
  follows a container started with `docker run -d`, running or exited, from
  its first line (or the checkpoint, in the state directory, per container id)
  to its exit; exits with its status; the final row has Properties.exit_status
  and oom_killed. json-file logs are read from the file, other drivers
  through the Engine API (DOCKER_HOST). Values given at `docker run` (-e,
  --env-file) and the image's secret-named variables are redacted.
  ExecutionMode defaults to "docker".

exit status (errors are never silent: -q hides summaries, not a failure):
  0   every record read was delivered (wrap mode: CMD's own status; 137 for a
      container killed by docker kill, the OOM killer or --stop-timeout;
      --container: the container's exit status)
  75  some records were not delivered (or the --archive is unfinished); stderr
      says how many and where they are kept; rerun the same command to resume
      from the checkpoint (wrap mode: --resume-journal JOURNAL)
  73  the destination cannot be used (workspace cannot be opened or created,
      sink cannot be built); nothing was shipped
  2   usage error;  1  an input file could not be read, or --container: no
      such container (gone, --rm) or the Docker daemon cannot be reached
  127 / 126  wrap mode: CMD not found / cannot be executed (a row says which)
  --exit-status command|delivery (wrap and container modes): always CMD's
  status, or always the delivery status (0/73/75); the summary JSON
  (--summary-json) holds both

examples:
  hal-logging-forward --run-id R1 --task-id T7 -- docker run --rm --init -e HAL_RUN_ID=R1 IMAGE
  hal-logging-forward --follow --until-pid 4242 docker_output.log
  hal-logging-forward --run-id R1 --task-id T7 --container "$(docker run -d IMAGE)"
  hal-logging-forward --dry-run --tasks-per-month 5000 old_run/*.log
"""


class UsageError(Exception):
    """Bad flags or arguments; the message says what to write instead."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's default exits with status 2 too
        raise UsageError(message)


#: --drain-timeout, --flush-interval...: seconds, 0 or more.
_positive_float = float_at_least(0)
#: --batch-rows, --max-in-flight...: a count, 1 or more.
_positive_int = int_at_least(1)
_bytes_size = byte_size


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage=(
            f"{PROG} [OPTIONS] FILE...\n       {PROG} --follow [OPTIONS] FILE\n"
            f"       {PROG} [OPTIONS] -- CMD [ARG...]\n"
            f"       {PROG} [OPTIONS] --container NAME_OR_ID"
        ),
        description="Ship a container's output to Azure Monitor (or the local workspace): "
        "every line, attributed to its run and task, redacted, nothing lost or sent twice.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files to ship (none in wrap mode)")

    g = p.add_argument_group("mode")
    g.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="tail FILE while it grows (survives truncation and rotation)",
    )
    g.add_argument(
        "--until-pid",
        type=int,
        metavar="PID",
        help="with --follow: stop once process PID has exited",
    )
    g.add_argument(
        "--idle-exit",
        type=_positive_float,
        metavar="SECONDS",
        help="with --follow: stop after SECONDS without new bytes",
    )
    g.add_argument(
        "--stop-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="wrap mode: after SIGTERM/SIGINT is passed on, give CMD SECONDS to exit, then "
        "stop it for good (a docker run's container through the daemon, then SIGKILL); "
        "a second signal does it at once (default 10, like docker stop)",
    )
    g.add_argument(
        "--container",
        metavar="NAME_OR_ID",
        help="follow Docker container NAME_OR_ID (running or exited) from its first line to its "
        "exit, and exit with its status (needs the [docker] extra)",
    )
    g.add_argument(
        "--raw-log",
        metavar="PATH",
        help="wrap mode: also append CMD's raw output (both streams) to PATH; raw means "
        "UNREDACTED (secrets included): created with mode 0600",
    )
    g.add_argument(
        "--raw-log-redacted",
        metavar="PATH",
        help="wrap mode: append CMD's output to PATH as it came, line by line, with secrets "
        "replaced as in the rows (mode 0600)",
    )
    g.add_argument(
        "--exit-status",
        choices=EXIT_STATUS_POLICIES,
        default="auto",
        help="wrap mode: what the exit status carries: auto (CMD's status when everything "
        "was delivered, else 75), command (always CMD's), delivery (0/73/75)",
    )

    # --- journal and archive (issue 16)
    g = p.add_argument_group("journal and archive")
    g.add_argument(
        "--journal",
        metavar="PATH",
        help="wrap mode: write the journal (each read of each stream, before parsing) to PATH "
        "(default: hal-forward-journal-<invocation>.haljournal beside the undelivered spool)",
    )
    g.add_argument(
        "--no-journal", action="store_true", help="wrap mode: keep no journal (no resume)"
    )
    g.add_argument(
        "--resume-journal",
        metavar="PATH",
        help="replay a wrap-mode journal after a crash: ship exactly what was not delivered, "
        "with the live run's record ids, streams and times",
    )
    g.add_argument(
        "--archive",
        metavar="DEST",
        help="keep the exact bytes (the journal, or the input file) gzip-compressed with a "
        "manifest, one archive per task: a folder, or a Blob Storage container URL "
        "https://ACCOUNT.blob.core.windows.net/CONTAINER",
    )
    # --- end journal and archive

    g = p.add_argument_group("context (trusted; falls back to the environment)")
    for col in schema.CONTEXT_COLUMNS:
        assert col.flag is not None
        g.add_argument(
            col.flag,
            dest=f"ctx_{col.name}",
            metavar="VALUE",
            help=f"{col.name} column (env {col.env})",
        )

    g = p.add_argument_group("input")
    g.add_argument(
        "--input-format",
        "--format",
        dest="input_format",
        choices=INPUT_FORMATS,
        default="auto",
        help="how lines are framed on disk (default: auto-detect per line)",
    )
    g.add_argument(
        "--input-stream",
        choices=schema.STREAMS,
        default="unknown",
        help="stream of a file input's lines when the file does not say (default: unknown)",
    )
    g.add_argument(
        "--resend",
        action="store_true",
        help="FILE was written by hal-logging on this VM — a dead-letter, spill or undelivered "
        "file: keep each row's record_id, context and Properties.hal as written (so rows "
        "already delivered are recognised as duplicates); never for container output",
    )
    g.add_argument(
        "--multiline-timeout",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="close an open traceback group after SECONDS without a continuation (default 1)",
    )

    g = p.add_argument_group("output")
    g.add_argument(
        "--sink",
        choices=SINK_NAMES,
        default="auto",
        help="where rows go (default auto: Azure if configured, else the local workspace)",
    )
    g.add_argument(
        "--db",
        metavar="PATH",
        help="local workspace file (env HAL_LOGGING_DB, default ./hal-logs.db)",
    )
    g.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="PATH",
        help="--sink jsonl target, '-' for stdout (default)",
    )
    g.add_argument(
        "--endpoint",
        metavar="URL",
        help="data collection endpoint (env AZURE_MONITOR_DATA_COLLECTION_ENDPOINT)",
    )
    g.add_argument(
        "--rule-id",
        metavar="ID",
        help="DCR immutable id, dcr-... (env AZURE_MONITOR_DATA_COLLECTION_RULE_ID)",
    )
    g.add_argument(
        "--stream",
        metavar="NAME",
        help=f"DCR stream (env AZURE_MONITOR_STREAM_NAME, default {schema.STREAM_NAME})",
    )
    g.add_argument(
        "--credential",
        choices=("auto", "managed-identity", "service-principal", "default"),
        default="auto",
        help="Azure credential (default auto: service principal env vars if set, else managed identity)",
    )
    g.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=4,
        metavar="N",
        help="concurrent Azure requests (default 4)",
    )
    g.add_argument(
        "--dead-letter",
        metavar="PATH",
        help="JSON lines file for rows the service refuses (default beside the checkpoint)",
    )
    g.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="--sink otlp collector URL (env OTEL_EXPORTER_OTLP_ENDPOINT)",
    )

    g = p.add_argument_group("delivery")
    g.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="checkpoint file (default FILE.hal-checkpoint beside each input)",
    )
    g.add_argument("--no-checkpoint", action="store_true", help="do not read or write checkpoints")
    g.add_argument(
        "--batch-rows",
        type=_positive_int,
        default=5000,
        metavar="N",
        help="rows per batch (default 5000)",
    )
    g.add_argument(
        "--batch-bytes",
        type=_bytes_size,
        default=1_000_000,
        metavar="BYTES",
        help="billed bytes per batch (default 1MB); the Azure output also closes a batch "
        "once its JSON fills one request (1 MiB)",
    )
    g.add_argument(
        "--flush-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="send a partial batch after SECONDS (default 1)",
    )
    g.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="bound on the final flush at the end or on SIGTERM (default 60)",
    )

    g = p.add_argument_group("reporting")
    g.add_argument(
        "--summary-json",
        metavar="PATH",
        help="write the run summary as JSON to PATH ('-' for stdout)",
    )
    pg = g.add_mutually_exclusive_group()
    pg.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar (files mode)",
    )
    pg.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show a progress bar"
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress or summary on stderr (a failure's cause is still shown)",
    )

    g = p.add_argument_group("redaction (on by default)")
    g.add_argument(
        "--no-redact", dest="redact", action="store_false", help="turn secret redaction off"
    )
    g.add_argument(
        "--redact-env",
        action="append",
        default=[],
        metavar="NAME",
        help="redact the value of environment variable NAME (repeatable; env HAL_LOGGING_REDACT_ENV=A,B)",
    )
    g.add_argument(
        "--no-redact-secret-names",
        dest="redact_secret_env_names",
        action="store_false",
        help="do not redact values of variables named like *KEY*, *TOKEN*, *SECRET*, *PASSWORD*",
    )

    g = p.add_argument_group("cost control")
    g.add_argument(
        "--min-level",
        type=str.upper,
        choices=LEVEL_CHOICES,
        metavar="LEVEL",
        help="drop rows below LEVEL",
    )
    g.add_argument(
        "--logger-level",
        dest="logger_levels",
        action="append",
        default=[],
        metavar="NAME=LEVEL",
        help="minimum level for logger NAME and its children (repeatable)",
    )
    g.add_argument(
        "--drop-message",
        action="append",
        default=[],
        metavar="REGEX",
        help="drop rows whose Message matches",
    )
    g.add_argument(
        "--drop-logger",
        action="append",
        default=[],
        metavar="REGEX",
        help="drop rows whose LoggerName matches",
    )
    g.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="LOGGER=RATIO",
        help="keep RATIO (0..1) of LOGGER's rows below WARNING, deterministically (repeatable)",
    )
    g.add_argument(
        "--no-fold-repeats",
        dest="fold_repeats",
        action="store_false",
        help="ship identical repeated lines as they are",
    )
    g.add_argument(
        "--task-byte-budget",
        type=_bytes_size,
        metavar="BYTES",
        help="after BYTES per task, only WARNING and above",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="send and write nothing; print volume and estimated cost",
    )
    g.add_argument(
        "--price-per-gb",
        type=_positive_float,
        default=DEFAULT_PRICE_PER_GB,
        metavar="USD",
        help=f"Analytics price per GB for the cost estimates (default {DEFAULT_PRICE_PER_GB}, "
        "list price; Basic and Auxiliary use their list prices)",
    )
    g.add_argument(
        "--tasks-per-month",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="tasks per month for the cost estimates (default 1000)",
    )
    return p


def _split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    args = list(argv)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1 :]
    return args, []


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, eq, val = v.partition("=")
        if not eq or not name or not val:
            raise UsageError(f"{what} expects NAME=VALUE, got {v!r}")
        out[name.strip()] = val.strip()
    return out


def config_from_args(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> ForwardConfig:
    """Parse the command line (and environment fallbacks) into a ForwardConfig."""
    env = os.environ if environ is None else environ
    opts, command = _split_command(argv)
    ns = build_parser().parse_args(opts)
    if ns.container is not None and ns.input_format == "auto":
        ns.input_format = "docker-json"  # the container's log is Docker's own format
    if "--" in argv and not command:
        raise UsageError("nothing after '--': give the command to run, e.g. -- docker run IMAGE")
    if ns.stop_timeout is not None and not command:
        raise UsageError("--stop-timeout only applies in wrap mode (-- CMD)")

    sample: dict[str, float] = {}
    for k, v in _pairs(ns.sample, "--sample").items():
        try:
            ratio = float(v)
        except ValueError:
            raise UsageError(
                f"--sample {k}={v}: the ratio must be a number between 0 and 1"
            ) from None
        sample[k] = ratio
    logger_levels = {k: v.upper() for k, v in _pairs(ns.logger_levels, "--logger-level").items()}

    notes: list[str] = []
    context: dict[str, str | None] = {}
    for col in schema.CONTEXT_COLUMNS:
        value = getattr(ns, f"ctx_{col.name}")
        if value is not None:
            context[col.name] = value

    cfg = ForwardConfig(
        files=list(ns.files),
        follow=ns.follow,
        command=command,
        container=ns.container,
        context=context,
        input_format=ns.input_format,
        input_stream=ns.input_stream,
        resend=ns.resend,
        multiline_timeout=ns.multiline_timeout,
        until_pid=ns.until_pid,
        idle_exit=ns.idle_exit,
        raw_log=ns.raw_log,
        stop_timeout=10.0 if ns.stop_timeout is None else ns.stop_timeout,
        raw_log_redacted=ns.raw_log_redacted,
        exit_status=ns.exit_status,
        notes=notes,
        command_env=parse_command_env(command, env, notes) if command else {},
        sink=ns.sink,
        db=ns.db or env.get("HAL_LOGGING_DB") or None,
        output=ns.output,
        endpoint=ns.endpoint or env.get("AZURE_MONITOR_DATA_COLLECTION_ENDPOINT") or None,
        rule_id=ns.rule_id or env.get("AZURE_MONITOR_DATA_COLLECTION_RULE_ID") or None,
        stream=ns.stream or env.get("AZURE_MONITOR_STREAM_NAME") or schema.STREAM_NAME,
        credential=ns.credential,
        max_in_flight=ns.max_in_flight,
        dead_letter=ns.dead_letter,
        otlp_endpoint=ns.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        checkpoint=ns.checkpoint,
        no_checkpoint=ns.no_checkpoint,
        batch_rows=ns.batch_rows,
        batch_bytes=ns.batch_bytes,
        flush_interval=ns.flush_interval,
        drain_timeout=ns.drain_timeout,
        summary_json=ns.summary_json,
        progress=ns.progress,
        quiet=ns.quiet,
        redact=ns.redact,
        redact_env=list(ns.redact_env),
        redact_secret_env_names=ns.redact_secret_env_names,
        min_level=ns.min_level,
        logger_levels=logger_levels,
        drop_message=list(ns.drop_message),
        drop_logger=list(ns.drop_logger),
        sample=sample,
        journal=ns.journal,
        no_journal=ns.no_journal,
        resume_journal=ns.resume_journal,
        archive=ns.archive,
        # --resend: the rows went through the filters when they were first
        # shipped; folding them again would merge rows of distinct record ids.
        fold_repeats=ns.fold_repeats and not ns.resend,
        task_byte_budget=ns.task_byte_budget,
        dry_run=ns.dry_run,
        price_per_gb=ns.price_per_gb,
        tasks_per_month=ns.tasks_per_month,
    )
    try:
        cfg.validate()  # each component's own checks (pipeline.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(args)
    except UsageError as exc:
        _eprint(f"{PROG}: {exc}\nTry '{PROG} --help' for the options.")
        return EXIT_USAGE
    try:
        return run_forward(config)
    except KeyboardInterrupt:  # pragma: no cover - the handlers catch SIGINT first
        _eprint(f"{PROG}: interrupted")
        return 130
    except OSError as exc:
        _eprint(
            f"{PROG}: {exc.filename or 'I/O error'}: {exc.strerror or exc}; nothing after the "
            "last checkpoint was lost, rerun to resume"
        )
        return EXIT_UNDELIVERED
    except Exception as exc:  # a bug, not bad input: say so briefly, keep the detail available
        import traceback

        _eprint(
            f"{PROG}: internal error: {type(exc).__name__}: {exc} (rerun resumes from the last "
            "checkpoint; set HAL_LOGGING_DEBUG=1 for the traceback and please report it)"
        )
        if os.environ.get("HAL_LOGGING_DEBUG"):
            traceback.print_exc()
        return EXIT_INPUT


__all__ = [
    "EXIT_DESTINATION",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_UNDELIVERED",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "config_from_args",
    "main",
    "parse_command_env",
    "read_env_file",
    "run_forward",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
