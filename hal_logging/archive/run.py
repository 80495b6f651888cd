"""The forwarder's side of archives: start one beside a run, and read one back as a source."""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from hal_logging import _json
from hal_logging.archive import (
    ARCHIVE_SUFFIX,
    BLOCK_SECONDS,
    MANIFEST_SUFFIX,
    ArchiveError,
    Archiver,
    Content,
    archive_name,
    file_streams,
    is_blob_url,
    journal_streams,
)
from hal_logging.pipeline.sources import CHUNK_BYTES, Chunk, Closed, Event, Opened

CONTEXT_KEYS = ("RunID", "TaskID", "Benchmark", "AgentName", "VMName", "ExecutionMode")


def start_archive(
    dest: str,
    *,
    kind: str,
    path: str,
    trusted: Mapping[str, str],
    credential: str = "auto",
    stream: str = "unknown",
    notify: Callable[[str], None] | None = None,
) -> Archiver:
    """Archive ``path`` (a journal or an input file) to ``dest``, resuming what is there."""
    from hal_logging.archive.targets import make_target

    context = {k: trusted[k] for k in CONTEXT_KEYS if trusted.get(k)}
    content = Content(path, kind)
    if kind == "journal":
        ident = str(content.header.get("invocation"))

        def extra() -> dict[str, Any]:
            return {"context": context, **journal_streams(path)}

    else:
        from hal_logging.pipeline.checkpoint import identify

        fd = os.open(path, os.O_RDONLY)
        try:
            ident_obj = identify(fd, final=True)
        finally:
            os.close(fd)
        assert ident_obj is not None
        from hal_logging.pipeline.checkpoint import context_tag

        # The record-id source a fresh shipping of this file uses (its identity and
        # the trusted context's tag): rows read back from the archive get the same ids.
        ident = f"{ident_obj.source}#{context_tag(trusted)}"

        def extra() -> dict[str, Any]:
            return {"context": context, **file_streams(path, stream, ident)}

    target = make_target(dest, credential)
    seconds = os.environ.get("HAL_LOGGING_ARCHIVE_BLOCK_SECONDS")  # how much a lost VM may lose
    archiver = Archiver(
        content,
        target,
        archive_name(context, kind, ident),
        extra,
        notify=notify,
        block_seconds=float(seconds) if seconds else BLOCK_SECONDS,
    )
    if kind == "journal":
        archiver.rerun_hint = (
            f"finish it with `hal-logging-forward --resume-journal {path} --archive {dest}` "
            "(ships nothing twice)"
        )
    archiver.start()
    return archiver


# -- reading back ------------------------------------------------------------------


@dataclass
class OpenedArchive:
    manifest: dict[str, Any]
    fh: IO[bytes]
    trusted: dict[str, str]
    where: str
    temp: str | None = None
    header: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        if self.temp:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)


def _names(arg: str) -> tuple[str, str]:
    """(archive, manifest) of an argument naming either."""
    if arg.endswith(MANIFEST_SUFFIX):
        return arg[: -len(MANIFEST_SUFFIX)] + ARCHIVE_SUFFIX, arg
    if arg.endswith(ARCHIVE_SUFFIX):
        return arg, arg[: -len(ARCHIVE_SUFFIX)] + MANIFEST_SUFFIX
    raise ArchiveError(
        f"{arg}: an archive is named *{ARCHIVE_SUFFIX} (its manifest *{MANIFEST_SUFFIX})"
    )


def open_archive(arg: str, credential: str = "auto") -> OpenedArchive:
    """Open an archive (local path or blob URL of its data or manifest) for reading."""
    data_name, man_name = _names(arg)
    temp: str | None = None
    if is_blob_url(arg):
        from hal_logging.archive.targets import BlobTarget, split_container_url

        base, container, _ = split_container_url(arg)
        target = BlobTarget(f"{base}/{container}", credential)
        prefix = f"{base}/{container}/"
        fd, temp = tempfile.mkstemp(prefix="hal-archive-", suffix=".json")
        with os.fdopen(fd, "w+b") as fh:
            target.download(man_name[len(prefix) :], fh)
            fh.seek(0)
            raw_manifest = fh.read()
        os.unlink(temp)
        fd, temp = tempfile.mkstemp(prefix="hal-archive-", suffix=ARCHIVE_SUFFIX)
        with os.fdopen(fd, "w+b") as fh:
            target.download(data_name[len(prefix) :], fh)
        local = temp
    else:
        try:
            with open(man_name, "rb") as fh:
                raw_manifest = fh.read()
        except OSError as exc:
            raise ArchiveError(
                f"cannot read the manifest {man_name}: {exc.strerror} (an archive whose manifest "
                "is missing was not finished: rerun the run that made it with --archive)"
            ) from exc
        local = data_name
    try:
        manifest = _json.loads(raw_manifest)
        if not isinstance(manifest, dict) or manifest.get("format") != "hal-logging-archive":
            raise ValueError
    except ValueError:
        raise ArchiveError(f"{man_name} is not a hal-logging archive manifest") from None
    try:
        fh2: IO[bytes] = gzip.open(local, "rb")  # type: ignore[assignment]
    except OSError as exc:
        raise ArchiveError(f"cannot read the archive {data_name}: {exc.strerror}") from exc
    trusted = {str(k): str(v) for k, v in (manifest.get("context") or {}).items() if v}
    return OpenedArchive(manifest, fh2, trusted, data_name, temp)


class ArchivedFileSource:
    """A file-mode archive: the input file's bytes, with the record-id source it was shipped with."""

    mode = "files"

    def __init__(self, opened: OpenedArchive) -> None:
        self.opened = opened
        src = opened.manifest.get("source") or {}
        self.source = str(src.get("source") or "archive")
        self.stream = str(src.get("stream") or "unknown")
        self.total_bytes = int(opened.manifest.get("content_bytes") or 0)
        self.skipped_bytes = 0
        self.remaining: dict[str, int] = {}
        self.finished = False

    def events(self) -> Iterator[Event]:
        gen = "archive"
        yield Opened(gen, self.stream, self.source, 0)
        try:
            for block in iter(lambda: self.opened.fh.read(CHUNK_BYTES), b""):
                yield Chunk(gen, block)
        except (OSError, EOFError) as exc:
            raise ArchiveError(f"{self.opened.where}: the archive is damaged ({exc})") from exc
        yield Closed(gen)
        self.finished = True

    def close(self) -> None:
        self.opened.close()


class ArchiveInputError(Exception):
    """An archive given as FILE cannot be read; the message says why."""


def archive_input(config: Any, environ: Mapping[str, str] | None) -> tuple[Any, Any]:
    """``(opened archive, journal replay or None)`` when ``config.files`` is one archive.

    ``(None, None)`` for any other input. An archive of a journal is replayed
    like ``--resume-journal`` (without a checkpoint: the destination's record
    ids recognise what it holds); ``config.files`` is emptied either way.
    """
    from hal_logging.archive import is_archive_path

    arg = config.files[0]
    if not (is_archive_path(arg) or is_blob_url(arg)):
        return None, None
    # (Imported only for an archive: every file run asks this first.)
    from hal_logging.pipeline.journal import JournalError, prepare_resume

    try:
        opened = open_archive(arg, config.credential)
    except ArchiveError as exc:
        raise ArchiveInputError(str(exc)) from exc
    resume = None
    if opened.manifest.get("kind") == "journal":
        config.resume_journal = arg
        try:
            resume = prepare_resume(config, environ, fh=opened.fh)
        except JournalError as exc:
            opened.close()
            raise ArchiveInputError(str(exc)) from exc
        finally:
            config.resume_journal = None
        config.no_checkpoint = True
    config.files = []
    return opened, resume
