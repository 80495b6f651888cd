"""``hal-logging-forward``: ship a container's output, with nothing lost (docs/contract.md §4).

Three modes::

    hal-logging-forward [OPTIONS] FILE...             # finished files (seed: Option B)
    hal-logging-forward --follow [OPTIONS] FILE       # a growing file (seed: Option A)
    hal-logging-forward [OPTIONS] -- CMD [ARG...]     # run CMD, forward its output live
    hal-logging-forward [OPTIONS] --container NAME    # follow a Docker container to its exit

This module only turns flags and environment into a
:class:`~hal_logging.pipeline.config.ForwardConfig`, builds the source, sink
and filters, runs the :class:`~hal_logging.pipeline.runner.Runner`, and prints
the summary. Errors a user can fix are one line on stderr saying what to do,
never a traceback.

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
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from hal_logging import schema
from hal_logging.pipeline.config import DEFAULT_PRICE_PER_GB, ForwardConfig
from hal_logging.pipeline.outcome import (
    EXIT_DESTINATION,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_STATUS_POLICIES,
    EXIT_UNDELIVERED,
    EXIT_USAGE,
    Delivery,
)
from hal_logging.pipeline.outcome import exit_status as choose_exit_status
from hal_logging.pipeline.spool import Spool

PROG = "hal-logging-forward"

INPUT_FORMATS = ("auto", "docker-json", "docker-timestamps", "raw")
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
  75  some records were not delivered; stderr says how many and where they are
      kept; rerun the same command to resume from the checkpoint
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


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return v


def _bytes_size(text: str) -> int:
    t = text.strip().upper()
    mult = 1
    for suffix, m in (
        ("KB", 1000),
        ("MB", 10**6),
        ("GB", 10**9),
        ("K", 1024),
        ("M", 1024**2),
        ("G", 1024**3),
    ):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500000, 1MB, 64K)") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


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
        choices=("auto", "sqlite", "jsonl", "azure", "otlp"),
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


def read_env_file(path: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of a docker ``--env-file``, read the way docker reads it.

    One ``NAME=VALUE`` per line, the value verbatim (no quotes removed, no
    expansion); lines starting with ``#`` and blank lines are skipped; a bare
    ``NAME`` passes the variable through from ``environ`` when set. Raises
    OSError when the file cannot be read.
    """
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n").lstrip()
            if not line or line.startswith("#"):
                continue
            name, eq, value = line.partition("=")
            name = name.strip()
            if not name or not name.replace("_", "a").replace(".", "a").isalnum():
                continue
            if eq:
                out[name] = value
            elif name in environ:
                out[name] = environ[name]
    return out


def parse_command_env(
    command: Sequence[str], environ: Mapping[str, str], notes: list[str] | None = None
) -> dict[str, str]:
    """``-e NAME=VALUE`` / ``--env NAME=VALUE`` / ``--env=NAME=VALUE`` pairs in CMD (docker style),
    and the variables of its ``--env-file FILE`` / ``--env-file=FILE`` files.

    ``-e NAME`` alone passes the variable through from the environment (as
    docker does), so its value is taken from ``environ`` when set. As in
    docker, ``-e`` wins over an env-file. An env-file that cannot be read is
    a warning in ``notes`` (its values cannot be redacted), never a crash.
    """
    out: dict[str, str] = {}
    args = list(command)
    for i, a in enumerate(args):
        path: str | None = None
        if a == "--env-file" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--env-file="):
            path = a[len("--env-file=") :]
        if not path:
            continue
        try:
            out.update(read_env_file(path, environ))
        except (OSError, UnicodeError) as exc:
            if notes is not None:
                reason = getattr(exc, "strerror", None) or str(exc)
                notes.append(
                    f"warning: cannot read the command's --env-file {path} ({reason}): its "
                    "values are not redacted; pass them with --redact-env NAME"
                )
    i = 0
    while i < len(args):
        a = args[i]
        spec: str | None = None
        if a in ("-e", "--env") and i + 1 < len(args):
            spec = args[i + 1]
            i += 1
        elif a.startswith("--env="):
            spec = a[len("--env=") :]
        elif a.startswith("-e") and len(a) > 2 and not a.startswith("--"):
            spec = a[2:]
        i += 1
        if not spec:
            continue
        name, eq, value = spec.partition("=")
        if not name or not name.replace("_", "a").isalnum():
            continue
        if eq:
            out[name] = value
        elif name in environ:
            out[name] = environ[name]
    return out


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
    if command and ns.files:
        raise UsageError("give FILEs or a command after '--', not both")
    if ns.container is not None:
        if not ns.container.strip():
            raise UsageError("--container needs a container name or id")
        if ns.files or command or ns.follow:
            raise UsageError(
                "--container reads one container's output: give no FILEs, no --follow and "
                "no command after '--' (run one forwarder per container)"
            )
        if ns.input_format not in ("auto", "docker-json"):
            raise UsageError("--container reads Docker's own log format: drop --input-format")
        ns.input_format = "docker-json"
    if "--" in argv and not command:
        raise UsageError("nothing after '--': give the command to run, e.g. -- docker run IMAGE")
    if not command and not ns.files and ns.container is None:
        raise UsageError(
            "nothing to forward: give FILE..., --follow FILE, -- CMD [ARG...] or --container NAME"
        )
    if ns.follow and command:
        raise UsageError("--follow reads a file; wrap mode (-- CMD) already forwards live")
    if ns.follow and len(ns.files) != 1:
        raise UsageError("--follow takes exactly one FILE (run one forwarder per file)")
    if ns.resend and (ns.follow or command or ns.container is not None):
        raise UsageError(
            "--resend ships finished files written by hal-logging (dead-letter, spill or "
            "undelivered files): give them as FILE..., without --follow or -- CMD"
        )
    if (ns.until_pid is not None or ns.idle_exit is not None) and not ns.follow:
        raise UsageError("--until-pid and --idle-exit only apply with --follow")
    if ns.raw_log and not command:
        raise UsageError("--raw-log only applies in wrap mode (-- CMD)")
    if ns.stop_timeout is not None and not command:
        raise UsageError("--stop-timeout only applies in wrap mode (-- CMD)")
    if ns.raw_log_redacted and not command:
        raise UsageError("--raw-log-redacted only applies in wrap mode (-- CMD)")
    if ns.raw_log_redacted and not ns.redact:
        raise UsageError("--raw-log-redacted needs redaction: drop --no-redact, or use --raw-log")
    if ns.exit_status != "auto" and not (command or ns.container):
        raise UsageError(
            "--exit-status only applies in wrap mode (-- CMD) or with --container: "
            "other modes have no command status"
        )

    sample: dict[str, float] = {}
    for k, v in _pairs(ns.sample, "--sample").items():
        try:
            ratio = float(v)
        except ValueError:
            raise UsageError(
                f"--sample {k}={v}: the ratio must be a number between 0 and 1"
            ) from None
        if not 0.0 <= ratio <= 1.0:
            raise UsageError(f"--sample {k}={v}: the ratio must be between 0 and 1")
        sample[k] = ratio
    logger_levels = {k: v.upper() for k, v in _pairs(ns.logger_levels, "--logger-level").items()}
    for k, v in logger_levels.items():
        if v not in schema.LEVELS:
            raise UsageError(
                f"--logger-level {k}={v}: LEVEL must be one of {', '.join(schema.LEVELS)}"
            )

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
        # --resend: the rows went through the filters when they were first
        # shipped; folding them again would merge rows of distinct record ids.
        fold_repeats=ns.fold_repeats and not ns.resend,
        task_byte_budget=ns.task_byte_budget,
        dry_run=ns.dry_run,
        price_per_gb=ns.price_per_gb,
        tasks_per_month=ns.tasks_per_month,
    )
    return cfg


def _eprint(msg: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(msg, file=sys.stderr, flush=True)


def _open_stores(config: ForwardConfig, destination: str = "") -> tuple[dict[str, Any], list[Any]]:
    """Checkpoint store per input path (one shared store with --checkpoint), each
    reading and writing the entries of ``destination`` only."""
    from hal_logging.pipeline.checkpoint import CheckpointStore, default_checkpoint_path

    by_input: dict[str, Any] = {}
    opened: dict[str, Any] = {}
    if config.no_checkpoint or config.command:
        return by_input, []
    for path in config.files:
        cpath = config.checkpoint or default_checkpoint_path(path)
        cpath = os.path.abspath(cpath)
        if cpath not in opened:
            opened[cpath] = CheckpointStore(cpath, destination).open(lock=not config.dry_run)
        by_input[path] = opened[cpath]
    return by_input, list(opened.values())


def _write_summary(config: ForwardConfig, stats: Any) -> None:
    """``--summary-json``: the run's facts, written atomically (or to stdout for '-')."""
    if not config.summary_json:
        return
    from hal_logging import _json

    data = stats.to_json(
        price_per_gb=config.price_per_gb if config.dry_run else None,
        tasks_per_month=config.tasks_per_month if config.dry_run else None,
    )
    data["cost_by_plan"] = stats.cost_by_plan(config.tasks_per_month, config.price_per_gb)
    payload = _json.dumps(data) + b"\n"
    try:
        if config.summary_json == "-":
            sys.stdout.buffer.write(payload)
            sys.stdout.flush()
        else:
            tmp = config.summary_json + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, config.summary_json)
    except OSError as exc:
        _eprint(f"{PROG}: cannot write --summary-json {config.summary_json}: {exc.strerror}")


def run_forward(config: ForwardConfig, environ: Mapping[str, str] | None = None) -> int:
    """Run the forwarder for a parsed config; returns the exit status."""
    from hal_logging.pipeline.checkpoint import CheckpointError, context_tag
    from hal_logging.pipeline.destination import destination_id, refusal
    from hal_logging.pipeline.filters import build_filters, make_redact_filter
    from hal_logging.pipeline.model import DeliveryError
    from hal_logging.pipeline.runner import Runner, trusted_context
    from hal_logging.pipeline.sinks import SinkConfigError, make_sink, resolve_sink_name
    from hal_logging.pipeline.sinks.sqlite import default_db_path
    from hal_logging.pipeline.sources.command import CommandError, CommandSource, RedactedLog
    from hal_logging.pipeline.sources.docker_engine import ContainerError
    from hal_logging.pipeline.sources.file import FileSource
    from hal_logging.pipeline.sources.tail import TailSource
    from hal_logging.pipeline.summary import RunStats

    quiet = config.quiet
    for note in config.notes:  # warnings from the command line: shown even with -q
        _eprint(f"{PROG}: {note}")
    container: Any = None  # --container: (client, ContainerInfo)
    container_store: Any = None
    if config.container:
        from hal_logging.pipeline.sources.container import ContainerSource, attach, container_env

        try:
            container = attach(config.container)
        except ContainerError as exc:
            _eprint(f"{PROG}: {exc}")
            return exc.exit_status
        # The container's environment, as the VM set it: context and secrets (like -e).
        config.command_env = container_env(container[1], config, environ)
    try:
        sink_name = resolve_sink_name(config)
    except SinkConfigError as exc:
        _eprint(f"{PROG}: {exc}")
        return EXIT_USAGE
    why_not = refusal(config, sink_name)  # an Azure VM with no ingestion settings
    if why_not:
        _eprint(f"{PROG}: {why_not}")
        return EXIT_USAGE
    trusted = trusted_context(config, environ)
    try:
        filters = build_filters(config, trusted)
    except ValueError as exc:
        _eprint(f"{PROG}: {exc}")
        return EXIT_USAGE
    for f in filters:
        for note in getattr(f, "notes", ()):
            if not quiet:
                _eprint(f"{PROG}: {note}")

    if not config.command and not config.follow:
        dirs = [p for p in config.files if os.path.isdir(p)]
        if dirs:
            _eprint(
                f"{PROG}: is a directory: {', '.join(dirs)} (nothing was shipped; give the "
                "log files inside it, e.g. DIR/*.log)"
            )
            return EXIT_INPUT
        missing = [p for p in config.files if not os.path.isfile(p)]
        if missing:
            _eprint(
                f"{PROG}: no such file: {', '.join(missing)} (nothing was shipped; for a file "
                "that does not exist yet use --follow)"
            )
            return EXIT_INPUT

    if sink_name == "sqlite" and config.sink == "auto" and not quiet:
        db = config.db or default_db_path()
        _eprint(
            f"{PROG}: no Azure endpoint and rule id set: writing to the local workspace {db} "
            f"(read it with: hal-logging query --db {db})"
        )

    destination = destination_id(config, sink_name)
    try:
        stores_by_input, stores = _open_stores(config, destination)
    except CheckpointError as exc:
        _eprint(f"{PROG}: {exc}")
        return EXIT_INPUT
    if container is not None:
        from hal_logging.pipeline.sources.container import open_store

        try:
            container_store = open_store(config, container[1], destination)
        except CheckpointError as exc:
            _eprint(f"{PROG}: {exc}")
            return EXIT_INPUT
        stores += [container_store] if container_store is not None else []
    for st in stores:
        if st.warning and not quiet:
            _eprint(f"{PROG}: {st.warning}")

    stop = threading.Event()
    abort = threading.Event()
    stats = RunStats()
    stats.destination = destination
    stats.exit_status_policy = config.exit_status
    ctx_tag = context_tag(trusted)

    def notify(msg: str) -> None:
        if not quiet:
            _eprint(f"{PROG}: {msg}")

    source: Any
    if config.command:
        redacted_log: RedactedLog | None = None
        if config.raw_log_redacted:
            # Its own redactor (same values and shapes): the pipe readers call it.
            redactor = make_redact_filter(config, trusted, environ).redactor
            try:
                redacted_log = RedactedLog(config.raw_log_redacted, redactor.redact_text)
            except OSError as exc:
                _eprint(
                    f"{PROG}: cannot open --raw-log-redacted {config.raw_log_redacted}: "
                    f"{exc.strerror}; choose a writable path"
                )
                for st in stores:
                    st.close()
                return EXIT_USAGE
        source = CommandSource(
            config.command, config.raw_log, config.stop_timeout, redacted_log=redacted_log
        )
        source.notify = notify
    elif container is not None:
        source = ContainerSource(container[0], container[1], container_store, stop, notify)
    elif config.follow:
        path = config.files[0]
        source = TailSource(
            path,
            stores_by_input.get(path),
            stop,
            stream=config.input_stream,
            until_pid=config.until_pid,
            idle_exit=config.idle_exit,
            notify=notify,
            context_tag=ctx_tag,
        )
    else:
        source = FileSource(
            config.files,
            stores_by_input.get,
            stop,
            stream=config.input_stream,
            notify=notify,
            context_tag=ctx_tag,
        )

    try:
        sink = make_sink(config)
    except (SinkConfigError, DeliveryError) as exc:
        # The destination cannot be used (workspace cannot be opened or created,
        # the sink's package is missing, its settings are refused): EX_CANTCREAT.
        # A missing setting is a usage error, as before.
        usage = isinstance(exc, SinkConfigError) and not isinstance(exc.__cause__, ImportError)
        _eprint(f"{PROG}: {exc}\n{PROG}: nothing was shipped; fix the above and rerun")
        for st in stores:
            st.close()
        source.close()
        if usage:
            return EXIT_USAGE
        # An orchestrator waiting for the summary gets one: nothing delivered, and why.
        stats.exit_status = EXIT_DESTINATION
        stats.mode, stats.sink = source.mode, sink_name
        stats.delivery = Delivery(complete=False, status=EXIT_DESTINATION).as_json()
        stats.notes.append(f"destination cannot be used: {exc}")
        stats.finish()
        _write_summary(config, stats)
        return EXIT_DESTINATION

    signals_seen: list[int] = []
    runner_box: list[Any] = []

    def on_signal(signum: int, _frame: Any) -> None:
        signals_seen.append(signum)
        if isinstance(source, CommandSource):
            source.forward_signal(signum)
            if source.returncode is not None or len(signals_seen) > 2:
                abort.set()
                sink.deadline = 0.0
            return
        if stats.interrupted is None:
            stats.interrupted = signal.Signals(signum).name
        if stop.is_set():  # second signal: stop waiting for the drain
            abort.set()
            sink.deadline = 0.0
        stop.set()

    old_handlers = {}
    stop_signals = [signal.SIGINT, signal.SIGTERM]
    if isinstance(source, CommandSource) and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
        # CMD runs in its own session, so a closed terminal's SIGHUP reaches only us:
        # pass it on like SIGTERM. (Not under nohup, which ignores it for both of us.)
        stop_signals.append(signal.SIGHUP)
    for sig in stop_signals:
        with contextlib.suppress(ValueError):  # not the main thread
            old_handlers[sig] = signal.signal(sig, on_signal)

    progress_bar: Any = None
    show_progress = config.progress
    if show_progress is None:
        show_progress = (not quiet) and isinstance(source, FileSource) and sys.stderr.isatty()
    if show_progress and isinstance(source, FileSource):
        try:
            from tqdm import tqdm

            progress_bar = tqdm(
                total=source.total_bytes,
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                desc="shipping",
                leave=False,
            )
        except ImportError:
            progress_bar = None

    spool: Spool | None = None
    if isinstance(source, CommandSource):
        base = os.path.dirname(os.path.abspath(config.raw_log)) if config.raw_log else os.getcwd()
        spool = Spool(
            os.path.join(base, f"hal-forward-undelivered-{source.invocation[:12]}.jsonl")
        )

    runner = Runner(
        config,
        source,
        sink,
        trusted=trusted,
        filters=filters,
        stats=stats,
        progress=progress_bar.update if progress_bar is not None else None,
        abort=abort,
    )
    runner_box.append(runner)
    if spool is not None:
        runner.on_undelivered = spool.write
    try:
        try:
            runner.run()
        except CommandError as exc:  # --raw-log cannot be opened: nothing was started
            _eprint(f"{PROG}: {exc}")
            return EXIT_USAGE
        except ContainerError as exc:
            _eprint(f"{PROG}: {exc}")
            return exc.exit_status
    finally:
        for sig, h in old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, h)
        if progress_bar is not None:
            progress_bar.close()
        with contextlib.suppress(Exception):
            sink.close()
        source.close()
        for st in stores:
            st.close()
        if spool is not None:
            spool.close()

    # -- outcome -----------------------------------------------------------------
    if isinstance(source, CommandSource) and source.escalated:
        stats.notes.append(
            f"stopped for good after {source.stop_reason}: " + "; ".join(source.escalated)
        )
    incomplete = stats.undelivered > 0 or stats.dead_lettered > 0 or runner.failure is not None
    unreadable_status = False
    errors: list[str] = []  # a failure's cause: shown even with -q
    if isinstance(source, FileSource):
        errors.extend(source.errors)
        if stats.interrupted and not source.finished:
            incomplete = True
            stats.notes.append(f"interrupted by {stats.interrupted}: reading stopped early")
        unreadable = [p for p, n in source.remaining.items() if n == -1]
        if unreadable and not incomplete:
            unreadable_status = True
    if isinstance(source, (FileSource, TailSource)):
        stats.resumed = dict(source.resumed)
    if isinstance(source, CommandSource) and source.spawn_error:
        _eprint(f"{PROG}: {source.spawn_error} (exit status {source.exit_status})")
    if runner.failure is not None:
        errors.extend(n for n in stats.notes if n.startswith("delivery stopped"))
        errors.extend(n for n in stats.notes if n.startswith("cannot write checkpoint"))
    errors.extend(n for n in stats.notes if n.startswith("drain timeout"))
    if container is not None:
        stats.notes.append(source.summary_note())
        if source.returncode is None or source.incomplete:
            incomplete = True  # the container's output was not read to its exit
    delivery = Delivery()
    if incomplete and not config.dry_run:
        if isinstance(source, CommandSource):
            if spool is not None and spool.rows:
                stats.where_kept.append(
                    f"{spool.path} ({spool.rows} rows as wire lines): ship it later with "
                    f"`{PROG} --resend {spool.path}` (keeps their record ids and context)"
                )
            if config.raw_log:
                stats.where_kept.append(f"{config.raw_log} (the command's raw output)")
        elif container is not None:
            stats.where_kept.append(
                f"the log of container {config.container}"
                + (f" from its checkpoint {container_store.path}" if container_store else "")
                + ": rerun the same command to resume"
            )
        else:
            for path, store in stores_by_input.items():
                stats.where_kept.append(
                    f"{path} from its checkpoint {store.path}: rerun the same command to resume"
                )
            if not stores_by_input:
                stats.where_kept.append("the input files (no checkpoint: a rerun sends them again)")
        delivery = Delivery(
            complete=False,
            status=EXIT_UNDELIVERED,
            undelivered=stats.undelivered + stats.dead_lettered,
            where_kept=stats.where_kept,
        )
    elif unreadable_status:
        delivery = Delivery(complete=False, status=EXIT_INPUT)
    # None unless the source ran a command (any source that knows one sets it).
    command_status = stats.command_status
    status = choose_exit_status(config.exit_status, command_status, delivery)
    stats.exit_status = status
    stats.delivery = delivery.as_json()

    if not quiet:
        _eprint(stats.render())
        if not config.dry_run:  # the dry run's report ends with the same lines
            _eprint(stats.render_cost_by_plan(config.tasks_per_month, config.price_per_gb))
    elif errors:  # -q: the summary is not shown, the cause still is
        for e in dict.fromkeys(errors):
            _eprint(f"{PROG}: {e}")
    if incomplete and not config.dry_run:
        n = stats.undelivered + stats.dead_lettered
        what = f"{n} record(s) not delivered" if n else "the input was not read to its end"
        _eprint(f"{PROG}: {what}; kept in " + ("; ".join(stats.where_kept) or "the input"))
    if config.dry_run and not quiet:
        _eprint(stats.render_dry_run(config.price_per_gb, config.tasks_per_month))
    _write_summary(config, stats)
    return status


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
