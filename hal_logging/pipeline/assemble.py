"""One forwarder run, assembled: source, sink, filters and stores from the config, then the Runner.

``hal-logging-forward`` parses its command line into a
:class:`~hal_logging.pipeline.config.ForwardConfig` and hands it to
:func:`run_forward`; everything from there to the exit status is here, in
the order it happens:

1. attach a followed container (its environment is context and secrets);
2. choose the sink (:data:`~hal_logging.pipeline.sinks.SINKS`) and refuse an
   Azure VM without ingestion settings;
3. build the filter chain and open the checkpoint stores of the destination;
4. build the source (:data:`~hal_logging.pipeline.sources.registry.SOURCES`)
   and the sink, install the stop signals (:mod:`.signals`), the progress bar
   and wrap mode's spool (:mod:`.spool`);
5. run the :class:`~hal_logging.pipeline.runner.Runner`, close everything;
6. decide the outcome (:mod:`.outcome`: where undelivered rows are kept, the
   exit status), print the summary and write ``--summary-json``.

Everything a user reads goes through ``say`` (one line, or a block, on
stderr): the CLI decides where that is. Errors a user can fix are one line
saying what to do, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.outcome import (
    EXIT_DESTINATION,
    EXIT_INPUT,
    EXIT_USAGE,
    Delivery,
    delivery_outcome,
    where_kept,
)
from hal_logging.pipeline.outcome import exit_status as choose_exit_status

#: The forwarder's command: the prefix of its messages, and what a kept file is resent with.
PROG = "hal-logging-forward"

Say = Callable[[str], None]


def eprint(msg: str) -> None:
    """A line on stderr; a closed stderr loses the line, never the run."""
    with contextlib.suppress(OSError, ValueError):
        print(msg, file=sys.stderr, flush=True)


def open_stores(config: ForwardConfig, destination: str = "") -> tuple[dict[str, Any], list[Any]]:
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


def write_summary(config: ForwardConfig, stats: Any, say: Say = eprint) -> None:
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
        say(f"{PROG}: cannot write --summary-json {config.summary_json}: {exc.strerror}")


def _progress_bar(config: ForwardConfig, source: Any) -> Any:
    """A tqdm bar over the files' bytes (files mode, on a terminal, when tqdm is there)."""
    from hal_logging.pipeline.sources.file import FileSource

    show = config.progress
    if show is None:
        show = (not config.quiet) and isinstance(source, FileSource) and sys.stderr.isatty()
    if not (show and isinstance(source, FileSource)):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=source.total_bytes,
        unit="B",
        unit_scale=True,
        file=sys.stderr,
        desc="shipping",
        leave=False,
    )


def run_forward(
    config: ForwardConfig, environ: Mapping[str, str] | None = None, say: Say = eprint
) -> int:
    """Run the forwarder for a parsed config; returns the exit status."""
    from hal_logging.pipeline.checkpoint import CheckpointError, context_tag
    from hal_logging.pipeline.destination import destination_id, refusal
    from hal_logging.pipeline.filters import build_filters
    from hal_logging.pipeline.model import DeliveryError
    from hal_logging.pipeline.runner import Runner, trusted_context
    from hal_logging.pipeline.signals import StopSignals
    from hal_logging.pipeline.sinks import SinkConfigError, make_sink, resolve_sink_name
    from hal_logging.pipeline.sinks.sqlite import default_db_path
    from hal_logging.pipeline.sources.command import CommandError, CommandSource
    from hal_logging.pipeline.sources.docker_engine import ContainerError
    from hal_logging.pipeline.sources.file import FileSource
    from hal_logging.pipeline.sources.registry import SourceSetup, SourceSetupError, make_source
    from hal_logging.pipeline.sources.tail import TailSource
    from hal_logging.pipeline.spool import Spool
    from hal_logging.pipeline.summary import RunStats

    quiet = config.quiet
    for note in config.notes:  # warnings from the command line: shown even with -q
        say(f"{PROG}: {note}")
    container: Any = None  # --container: (client, ContainerInfo)
    container_store: Any = None
    if config.container:
        from hal_logging.pipeline.sources.container import attach, container_env

        try:
            container = attach(config.container)
        except ContainerError as exc:
            say(f"{PROG}: {exc}")
            return exc.exit_status
        # The container's environment, as the VM set it: context and secrets (like -e).
        config.command_env = container_env(container[1], config, environ)
    # A replay (--resume-journal, an archive given as FILE) takes the live run's
    # context and settings: its own context wins over this environment's.
    resume: Any = None
    resumed_trust: dict[str, str] = {}
    if config.resume_journal:
        from hal_logging.pipeline.journal import JournalError, prepare_resume

        try:
            resume = prepare_resume(config, environ)
        except JournalError as exc:
            say(f"{PROG}: {exc}")
            return EXIT_INPUT
        resumed_trust = dict(resume.trusted)
    archived_in: Any = None  # an archive given as FILE (read back like a file)
    if len(config.files) == 1 and not config.follow:
        from hal_logging.archive.run import ArchiveInputError, archive_input

        try:
            archived_in, resume_in = archive_input(config, environ)
        except ArchiveInputError as exc:
            say(f"{PROG}: {exc}")
            return EXIT_INPUT
        if archived_in is not None:
            resume = resume_in or resume
            resumed_trust = dict(archived_in.trusted)
    try:
        sink_name = resolve_sink_name(config)
    except SinkConfigError as exc:
        say(f"{PROG}: {exc}")
        return EXIT_USAGE
    why_not = refusal(config, sink_name)  # an Azure VM with no ingestion settings
    if why_not:
        say(f"{PROG}: {why_not}")
        return EXIT_USAGE
    trusted = {**trusted_context(config, environ), **resumed_trust}
    try:
        filters = build_filters(config, trusted)
    except ValueError as exc:
        say(f"{PROG}: {exc}")
        return EXIT_USAGE
    for f in filters:
        for note in f.notes:
            if not quiet:
                say(f"{PROG}: {note}")

    if not config.command and not config.follow and not archived_in:
        dirs = [p for p in config.files if os.path.isdir(p)]
        if dirs:
            say(
                f"{PROG}: is a directory: {', '.join(dirs)} (nothing was shipped; give the "
                "log files inside it, e.g. DIR/*.log)"
            )
            return EXIT_INPUT
        missing = [p for p in config.files if not os.path.isfile(p)]
        if missing:
            say(
                f"{PROG}: no such file: {', '.join(missing)} (nothing was shipped; for a file "
                "that does not exist yet use --follow)"
            )
            return EXIT_INPUT

    if sink_name == "sqlite" and config.sink == "auto" and not quiet:
        db = config.db or default_db_path()
        say(
            f"{PROG}: no Azure endpoint and rule id set: writing to the local workspace {db} "
            f"(read it with: hal-logging query --db {db})"
        )

    destination = destination_id(config, sink_name)
    try:
        stores_by_input, stores = open_stores(config, destination)
    except CheckpointError as exc:
        say(f"{PROG}: {exc}")
        return EXIT_INPUT
    if container is not None:
        from hal_logging.pipeline.sources.container import open_store

        try:
            container_store = open_store(config, container[1], destination)
        except CheckpointError as exc:
            say(f"{PROG}: {exc}")
            return EXIT_INPUT
        stores += [container_store] if container_store is not None else []
    for st in stores:
        if st.warning and not quiet:
            say(f"{PROG}: {st.warning}")

    stop = threading.Event()
    abort = threading.Event()
    stats = RunStats()
    stats.destination = destination
    stats.exit_status_policy = config.exit_status

    def notify(msg: str) -> None:
        if not quiet:
            say(f"{PROG}: {msg}")

    setup = SourceSetup(
        stop=stop,
        notify=notify,
        trusted=trusted,
        context_tag=context_tag(trusted),
        environ=environ,
        stores_by_input=stores_by_input,
        container=container,
        container_store=container_store,
    )
    journal_store: Any = None  # the journal's checkpoint (live or replayed)
    source: Any
    if resume is not None:
        from hal_logging.pipeline.checkpoint import CheckpointStore, default_checkpoint_path

        if not config.no_checkpoint:
            try:
                journal_store = CheckpointStore(
                    config.checkpoint or default_checkpoint_path(resume.path), destination
                ).open(lock=not config.dry_run)
            except CheckpointError as exc:
                say(f"{PROG}: {exc}")
                return EXIT_INPUT
            stores.append(journal_store)
        source = resume.source(journal_store, destination)
    elif archived_in is not None:
        from hal_logging.archive.run import ArchivedFileSource

        source = ArchivedFileSource(archived_in)
    else:
        try:
            source = make_source(config, setup)
        except SourceSetupError as exc:
            say(f"{PROG}: {exc}")
            for st in stores:
                st.close()
            return exc.status

    try:
        sink = make_sink(config)
    except (SinkConfigError, DeliveryError) as exc:
        # The destination cannot be used (workspace cannot be opened or created,
        # the sink's package is missing, its settings are refused): EX_CANTCREAT.
        # A missing setting is a usage error, as before.
        usage = isinstance(exc, SinkConfigError) and not isinstance(exc.__cause__, ImportError)
        say(f"{PROG}: {exc}\n{PROG}: nothing was shipped; fix the above and rerun")
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
        write_summary(config, stats, say)
        return EXIT_DESTINATION

    signals = StopSignals(
        stop=stop,
        abort=abort,
        sink=sink,
        stats=stats,
        command=source if isinstance(source, CommandSource) else None,
    )
    signals.install()

    progress_bar = _progress_bar(config, source)

    spool: Spool | None = None
    if isinstance(source, CommandSource):
        base = os.path.dirname(os.path.abspath(config.raw_log)) if config.raw_log else os.getcwd()
        spool = Spool(os.path.join(base, f"hal-forward-undelivered-{source.invocation[:12]}.jsonl"))

    # Wrap mode's journal: on by default, written before parsing (--resume-journal).
    journal_writer: Any = None
    if isinstance(source, CommandSource) and not config.no_journal and not config.dry_run:
        from hal_logging.pipeline.journal import JournalError, start_live_journal

        try:
            journal_writer, jstore = start_live_journal(
                config, source, trusted, destination, os.path.dirname(spool.path if spool else ".")
            )
        except (JournalError, CheckpointError) as exc:
            if config.journal:
                say(f"{PROG}: {exc}")
                signals.restore()
                return EXIT_USAGE
            notify(f"{exc}; going on without a journal (no --resume-journal after a crash)")
        else:
            if jstore is not None:
                stores.append(jstore)
                journal_store = jstore
    archiver: Any = None
    if config.archive:
        from hal_logging.archive import ArchiveError
        from hal_logging.archive.run import start_archive

        apath = (
            journal_writer.path
            if journal_writer is not None
            else (config.resume_journal or (config.files[0] if config.files else None))
        )
        try:
            if apath is None:
                raise ArchiveError("--archive: nothing to archive (no journal)")
            archiver = start_archive(
                config.archive,
                kind="file" if config.files else "journal",
                path=apath,
                trusted=trusted,
                credential=config.credential,
                stream=config.input_stream,
                notify=notify,
            )
        except ArchiveError as exc:  # not a folder, no SDK, no credential: fix and rerun
            say(f"{PROG}: {exc}")
            signals.restore()
            if journal_writer is not None:
                journal_writer.close()
            for st in stores:
                st.close()
            return EXIT_USAGE

    runner = Runner(
        config.inputs,
        config.delivery,
        source,
        sink,
        trusted=trusted,
        filters=filters,
        stats=stats,
        progress=progress_bar.update if progress_bar is not None else None,
        abort=abort,
    )
    if spool is not None:
        runner.on_undelivered = spool.write
    try:
        try:
            runner.run()
        except CommandError as exc:  # --raw-log cannot be opened: nothing was started
            say(f"{PROG}: {exc}")
            return EXIT_USAGE
        except ContainerError as exc:
            say(f"{PROG}: {exc}")
            return exc.exit_status
    finally:
        signals.restore()
        if progress_bar is not None:
            progress_bar.close()
        with contextlib.suppress(Exception):
            sink.close()
        source.close()
        for st in stores:
            st.close()
        if spool is not None:
            spool.close()
        if journal_writer is not None:
            journal_writer.close()
            if journal_writer.error:
                stats.notes.append(
                    f"{journal_writer.error}: the journal is incomplete (a --resume-journal "
                    "after a crash would miss what came after)"
                )

    # -- outcome -----------------------------------------------------------------
    # The archive is part of completeness: its bytes must be somewhere safe.
    archive_incomplete = False
    if archiver is not None:
        import time as _time

        if not archiver.finish(_time.monotonic() + max(1.0, config.drain_timeout)):
            archive_incomplete = True
            stats.notes.append(f"archive incomplete: {archiver.error}")
            stats.where_kept.append(archiver.where_kept())
        elif not quiet:
            p = archiver.progress
            share = p.compressed / p.raw if p.raw else 0.0
            notify(
                f"archived {p.raw} bytes to {archiver.target.describe(archiver.name)} "
                f"({p.compressed} compressed, {share:.1%}), manifest beside it"
            )
    if isinstance(source, CommandSource) and source.escalated:
        stats.notes.append(
            f"stopped for good after {source.stop_reason}: " + "; ".join(source.escalated)
        )
    incomplete = stats.undelivered > 0 or stats.dead_lettered > 0 or runner.failure is not None
    unreadable_status = False
    errors: list[str] = []  # a failure's cause: shown even with -q
    delivery_incomplete = incomplete
    incomplete = incomplete or archive_incomplete
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
        say(f"{PROG}: {source.spawn_error} (exit status {source.exit_status})")
    if runner.failure is not None:
        errors.extend(n for n in stats.notes if n.startswith("delivery stopped"))
        errors.extend(n for n in stats.notes if n.startswith("cannot write checkpoint"))
    errors.extend(n for n in stats.notes if n.startswith("drain timeout"))
    if container is not None:
        stats.notes.append(source.summary_note())
        if source.returncode is None or source.incomplete:
            incomplete = True  # the container's output was not read to its exit
    # The journal: its final row counts as delivered once the run is complete.
    jpath = journal_writer.path if journal_writer is not None else config.resume_journal
    if jpath and journal_store is not None and not delivery_incomplete and not config.dry_run:
        from hal_logging.pipeline.journal import mark_exit_delivered

        with contextlib.suppress(OSError):
            mark_exit_delivered(journal_store, os.path.abspath(jpath), destination)
    if resume is not None and resume.reader.torn:
        stats.notes.append(f"the journal ends with {resume.reader.torn}: what came before was shipped")
    if resume is not None and getattr(source, "unfinished", False):
        stats.notes.append(
            "the journal ends before the command did (the forwarder was stopped): its "
            "output up to then was shipped, with a final row saying the exit status is unknown"
        )
    if archived_in is not None:
        archived_in.close()
    if delivery_incomplete and jpath and not config.dry_run:
        also = " (instead of --resend of the spool)" if spool is not None and spool.rows else ""
        stats.where_kept.append(
            f"{jpath} (the journal): ship what is missing with `{PROG} --resume-journal {jpath}`"
            f"{also} (same record ids, streams and times)"
        )
    if incomplete and not config.dry_run:
        stats.where_kept.extend(
            where_kept(
                source.mode,
                prog=PROG,
                spool=(spool.path, spool.rows) if spool is not None else None,
                raw_log=config.raw_log,
                container=config.container,
                container_checkpoint=str(container_store.path) if container_store else None,
                checkpoints={path: str(st.path) for path, st in stores_by_input.items()},
            )
        )
    delivery = delivery_outcome(
        incomplete=incomplete and not config.dry_run,
        unreadable=unreadable_status,
        undelivered=stats.undelivered + stats.dead_lettered,
        kept=stats.where_kept,
    )
    # None unless the source ran a command (any source that knows one sets it).
    command_status = stats.command_status
    policy = config.exit_status
    if policy == "auto" and (resume is not None or archived_in is not None):
        # A replay (--resume-journal, an archive read back) is a delivery job: its
        # status says whether the rows arrived; the command's is in the summary
        # and the final row, as the live run wrote them.
        policy = "delivery"
    status = choose_exit_status(policy, command_status, delivery)
    stats.exit_status = status
    stats.delivery = delivery.as_json()

    if not quiet:
        say(stats.render())
        if not config.dry_run:  # the dry run's report ends with the same lines
            say(stats.render_cost_by_plan(config.tasks_per_month, config.price_per_gb))
    elif errors:  # -q: the summary is not shown, the cause still is
        for e in dict.fromkeys(errors):
            say(f"{PROG}: {e}")
    if incomplete and not config.dry_run:
        n = stats.undelivered + stats.dead_lettered
        what = f"{n} record(s) not delivered" if n else "the input was not read to its end"
        if archive_incomplete and not delivery_incomplete:
            what = "the archive is incomplete"
        say(f"{PROG}: {what}; kept in " + ("; ".join(stats.where_kept) or "the input"))
    if config.dry_run and not quiet:
        say(stats.render_dry_run(config.price_per_gb, config.tasks_per_month))
    write_summary(config, stats, say)
    return status


__all__ = ["PROG", "eprint", "open_stores", "run_forward", "write_summary"]
