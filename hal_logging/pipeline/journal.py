"""Wrap mode's journal: the command's bytes, per stream, with the times the parser used.

Why a journal. A pipe cannot be re-read, so before this a forwarder SIGKILLed in
wrap mode left only ``--raw-log`` (both streams mixed, no read times) and no
checkpoint: shipping the raw log gave new record ids (the rows already
delivered came back as duplicates) and lost each row's stream. The journal is
written *before parsing* and keeps everything a replay needs to make the very
rows the live run made:

* each read of each pipe (``D`` record): the stream, its byte offset in that
  stream, the read time, and the raw bytes (written by the reader thread as
  soon as ``os.read`` returns, so a SIGKILL loses at most what the kernel
  still held in the pipe);
* how the live parser saw them (``F``: "stream S was fed up to offset O with
  read time T", ``T``: a timer tick that may close a traceback group, ``C``: a
  stream closed, with the time its last partial line was framed), so a replay
  frames the same chunks at the same times (the same ``TimeGenerated`` for
  rows timed by their read) and groups the same lines;
* the command's final row (``E``), exactly as the live run built it;
* a header with the invocation id: record ids derive from
  ``<invocation>-<stream>`` and stream offsets, so replayed rows carry the
  live run's ids.

Framing (documented in docs/journal.md): a text header line
``HALJOURNAL 1\\n``, one JSON line (the header object), then binary records::

    magic  b"HJ"   2 bytes
    kind   u8      b"D" data, b"F" fed, b"T" tick, b"C" closed, b"E" exit row
    stream u8      0 stdout, 1 stderr (0 for T and E)
    time   f64     seconds since the epoch (little-endian)
    offset u64     D: stream offset of the first byte; F: stream offset fed up to;
                   C: 1 when the stream was read to its end, else 0
    length u32     payload bytes that follow
    crc32  u32     of the payload
    payload        D: the raw bytes; E: the final row as JSON; else empty

Length-prefixed raw bytes rather than base64 JSON lines (Docker's json-file
shape): 28 bytes per read instead of a third more bytes plus an encode and
decode per read (benchmarks/archive.py measures both). A record cut short by a
SIGKILL (or a CRC mismatch) ends the journal there: what came before is used.

Resuming. The live run commits a checkpoint (``<journal>.hal-checkpoint``)
after delivery, per stream, like a file's; ``hal-logging-forward
--resume-journal PATH`` replays the journal from the start of each stream's
undelivered part and ships only that, then the final row if it was not
delivered. A checkpoint belongs to one destination: replaying into another
destination ships the journal whole.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from hal_logging import _json
from hal_logging.pipeline.checkpoint import CheckpointStore, FileIdentity
from hal_logging.pipeline.sources import Chunk, Closed, Event, FileInput, Idle, Opened

MAGIC_LINE = b"HALJOURNAL 1\n"
RECORD = struct.Struct("<2sBBdQII")
RECORD_MAGIC = b"HJ"
STREAMS = ("stdout", "stderr")
STREAM_CODE = {"stdout": 0, "stderr": 1}
KIND_DATA = ord("D")
KIND_FED = ord("F")
KIND_TICK = ord("T")
KIND_CLOSED = ord("C")
KIND_EXIT = ord("E")
#: Default file name of a wrap-mode journal (beside the undelivered spool).
JOURNAL_NAME = "hal-forward-journal-{inv}.haljournal"


class JournalError(Exception):
    """The journal cannot be written or read; the message says what to do."""


def default_journal_path(base_dir: str, invocation: str) -> str:
    return os.path.join(base_dir, JOURNAL_NAME.format(inv=invocation[:12]))


# -- writing ------------------------------------------------------------------------


class JournalWriter:
    """Appends records; safe from several threads (one ``os.write`` per record, locked).

    No fsync per record: a SIGKILLed process loses nothing the kernel already
    has; :meth:`sync` is called at the end (and by the archiver before it reads).
    """

    def __init__(self, path: str, header: Mapping[str, Any]) -> None:
        self.path = os.path.abspath(path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except FileExistsError as exc:
            raise JournalError(
                f"journal {path} already exists: give a new --journal PATH (or resume it with "
                f"--resume-journal {path})"
            ) from exc
        except OSError as exc:
            raise JournalError(
                f"cannot create journal {path}: {exc.strerror}; choose a writable --journal PATH "
                "or turn it off with --no-journal"
            ) from exc
        self._lock = threading.Lock()
        self.error: str | None = None
        self.bytes_written = 0
        self._write(MAGIC_LINE + _json.dumps(dict(header)) + b"\n")

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, data)
                self.bytes_written += len(data)
            except OSError as exc:
                if self.error is None:
                    self.error = f"journal {self.path}: {exc.strerror}"

    def _record(self, kind: int, stream: str, t: float, offset: int, payload: bytes = b"") -> None:
        head = RECORD.pack(
            RECORD_MAGIC,
            kind,
            STREAM_CODE.get(stream, 0),
            t,
            offset,
            len(payload),
            zlib.crc32(payload),
        )
        self._write(head + payload if payload else head)

    def data(self, stream: str, offset: int, t: float, data: bytes) -> None:
        self._record(KIND_DATA, stream, t, offset, data)

    def fed(self, stream: str, end: int, t: float) -> None:
        self._record(KIND_FED, stream, t, end)

    def tick(self, t: float) -> None:
        self._record(KIND_TICK, "stdout", t, 0)

    def closed(self, stream: str, complete: bool, t: float) -> None:
        self._record(KIND_CLOSED, stream, t, 1 if complete else 0)

    def exit(self, row: Mapping[str, Any]) -> None:
        self._record(KIND_EXIT, "stdout", time.time(), 0, _json.dumps(dict(row)))

    def sync(self) -> None:
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


# -- reading ------------------------------------------------------------------------


@dataclass(slots=True)
class JournalRecord:
    kind: int
    stream: str
    time: float
    offset: int
    payload: bytes


@dataclass
class JournalReader:
    """Reads a journal from a binary file object (a file, or a gzip archive's stream)."""

    fh: IO[bytes]
    name: str = "journal"
    header: dict[str, Any] = field(default_factory=dict)
    #: Why reading stopped before the end of the file (a torn last record), or "".
    torn: str = ""

    def read_header(self) -> dict[str, Any]:
        first = self.fh.readline()
        if first != MAGIC_LINE:
            raise JournalError(
                f"{self.name} is not a hal-logging journal (it does not start with "
                f"{MAGIC_LINE.strip().decode()!r})"
            )
        line = self.fh.readline()
        try:
            header = _json.loads(line)
            if not isinstance(header, dict) or "invocation" not in header:
                raise ValueError
        except ValueError:
            raise JournalError(f"{self.name}: the journal header is unreadable") from None
        self.header = header
        return header

    def records(self) -> Iterator[JournalRecord]:
        read = self.fh.read
        size = RECORD.size
        unpack = RECORD.unpack
        while True:
            head = read(size)
            if not head:
                return
            if len(head) < size:
                self.torn = f"a record header cut after {len(head)} bytes (the writer was stopped)"
                return
            magic, kind, code, t, offset, length, crc = unpack(head)
            if magic != RECORD_MAGIC:
                self.torn = "a record without its magic bytes (the file is damaged after it)"
                return
            payload = read(length) if length else b""
            if len(payload) < length:
                self.torn = "a record cut short (the writer was stopped)"
                return
            if zlib.crc32(payload) != crc:
                self.torn = "a record whose checksum does not match (damaged)"
                return
            yield JournalRecord(kind, STREAMS[code] if code < 2 else "stdout", t, offset, payload)


def open_journal(path: str) -> tuple[IO[bytes], JournalReader]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from exc
    reader = JournalReader(fh, name=path)
    try:
        reader.read_header()
    except BaseException:
        fh.close()
        raise
    return fh, reader


def stream_bytes(reader: JournalReader) -> dict[str, tuple[int, str]]:
    """Per stream: bytes and sha256 of the raw data in a journal (the bytes printed)."""
    import hashlib

    out: dict[str, Any] = {s: [0, hashlib.sha256()] for s in STREAMS}
    for rec in reader.records():
        if rec.kind == KIND_DATA:
            acc = out[rec.stream]
            acc[0] += len(rec.payload)
            acc[1].update(rec.payload)
    return {s: (v[0], v[1].hexdigest()) for s, v in out.items()}


# -- checkpoints ----------------------------------------------------------------------

_NO_IDENT = FileIdentity(0, 0, 0, "")


class JournalInput(FileInput):
    """A journal stream as a checkpointed input: the runner commits its marks after delivery."""

    def __init__(self, key: str, store: CheckpointStore | None, destination: str) -> None:
        super().__init__(key, -1, _NO_IDENT, store)
        self.destination = destination

    def entry(self, source: str, offset: int) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": source,
            "offset": offset,
            "destination": self.destination,
            "updated": time.time(),
        }

    def close(self) -> None:
        pass


def checkpoint_key(journal_key: str, part: str, destination: str) -> str:
    """One entry per journal part *and destination*: shipping the journal to another
    destination neither uses nor overwrites this one's progress."""
    return f"{journal_key}#{part}|{destination}"


def delivered_offset(store: CheckpointStore | None, key: str, source: str, destination: str) -> int:
    """Where delivery of ``key`` stopped for this destination (0: ship it whole)."""
    entry = store.get(key) if store is not None else None
    if not entry or entry.get("source") != source or entry.get("destination") != destination:
        return 0
    try:
        return max(0, int(entry.get("offset", 0)))
    except (TypeError, ValueError):
        return 0


def exit_delivered(store: CheckpointStore | None, journal_key: str, destination: str) -> bool:
    entry = store.get(checkpoint_key(journal_key, "exit", destination)) if store else None
    return bool(entry and entry.get("destination") == destination and entry.get("delivered"))


def mark_exit_delivered(store: CheckpointStore, journal_key: str, destination: str) -> None:
    store.commit(
        {
            checkpoint_key(journal_key, "exit", destination): {
                "delivered": True,
                "destination": destination,
                "updated": time.time(),
            }
        }
    )


# -- replay -------------------------------------------------------------------------


class JournalSource:
    """Replays a journal as the live run saw it (``--resume-journal``, or an archive).

    Chunks are cut and timed as the live parser got them (``F`` records); data
    the live run read but never parsed (it was killed first) follows, one read
    at a time. Each stream starts at its checkpoint, so only what was not yet
    delivered is shipped. ``mode`` is "journal": the runner treats it like wrap
    mode (timer ticks close traceback groups) with the recorded times.
    """

    mode = "journal"

    def __init__(
        self,
        reader: JournalReader,
        *,
        store: CheckpointStore | None = None,
        key: str = "",
        destination: str = "",
        close_fh: IO[bytes] | None = None,
    ) -> None:
        self.reader = reader
        self.header = reader.header
        self.invocation = str(self.header["invocation"])
        self.store = store
        self.key = key
        self.destination = destination
        self._close_fh = close_fh
        self.starts = {
            s: delivered_offset(
                store, checkpoint_key(key, s, destination), self.source_id(s), destination
            )
            for s in STREAMS
        }
        self.exit_row: dict[str, Any] | None = None
        #: The last time the journal records (the forwarder was alive then).
        self.last_time = 0.0
        #: The live run ended before its command did (no exit row in the journal).
        self.unfinished = False
        self.total_bytes = 0
        self.skipped_bytes = sum(self.starts.values())
        self.exit_already_delivered = exit_delivered(store, key, destination)

    def source_id(self, stream: str) -> str:
        return f"{self.invocation}-{stream}"

    @property
    def lifetime_start(self) -> float | None:
        """When the live run's command was about to start (the header's time, written
        just before it): wire-line times before it are claims, as they were live."""
        started = self.header.get("started")
        return float(started) if isinstance(started, (int, float)) else None

    @property
    def merged(self) -> bool:
        return bool(self.header.get("merged"))

    def _cut(self, stream: str, start: int, data: bytes) -> bytes:
        """The part of ``data`` (starting at stream offset ``start``) past the checkpoint."""
        skip = self.starts[stream] - start
        if skip <= 0:
            return data
        return data[skip:] if skip < len(data) else b""

    def events(self) -> Iterator[Event]:
        for s in STREAMS:
            tag = "unknown" if self.merged and s == "stdout" else s
            inp = (
                JournalInput(
                    checkpoint_key(self.key, s, self.destination), self.store, self.destination
                )
                if self.store is not None
                else None
            )
            yield Opened(s, tag, self.source_id(s), self.starts[s], inp)
        pending: dict[str, deque[tuple[int, float, bytes]]] = {s: deque() for s in STREAMS}
        order: deque[tuple[str, int]] = deque()  # unfed reads, in the order they were read
        fed = dict.fromkeys(STREAMS, 0)
        closed: set[str] = set()
        last_t = 0.0
        for rec in self.reader.records():
            last_t = rec.time or last_t
            kind = rec.kind
            if kind == KIND_DATA:
                pending[rec.stream].append((rec.offset, rec.time, rec.payload))
                order.append((rec.stream, rec.offset))
            elif kind == KIND_FED:
                s = rec.stream
                q = pending[s]
                parts: list[bytes] = []
                pos = fed[s]
                while q and pos < rec.offset:
                    off, _t, data = q.popleft()
                    parts.append(data)
                    pos = off + len(data)
                start = fed[s]
                fed[s] = pos
                data = self._cut(s, start, b"".join(parts))
                if data:
                    self.total_bytes += len(data)
                    yield Chunk(s, data, rec.time)
            elif kind == KIND_TICK:
                yield Idle(rec.time)
            elif kind == KIND_CLOSED:
                closed.add(rec.stream)
                yield Closed(rec.stream, bool(rec.offset), rec.time)
            elif kind == KIND_EXIT:
                with contextlib.suppress(ValueError):
                    row = _json.loads(rec.payload)
                    if isinstance(row, dict):
                        self.exit_row = row
        # Read live but never parsed (the forwarder was stopped first): one read at a time.
        for s, off in order:
            q = pending[s]
            if not q or q[0][0] != off:
                continue
            off, t, data = q.popleft()
            data = self._cut(s, off, data)
            fed[s] = off + len(data)
            if data:
                self.total_bytes += len(data)
                yield Chunk(s, data, t)
        self.last_time = last_t
        for s in STREAMS:
            if s not in closed:
                self.unfinished = True
                yield Closed(s, True, last_t)

    def final_row(self, command_row: Any) -> tuple[dict[str, Any], str] | None:
        """The row that ends the run (and its record-id source), or None when delivered.

        The live run's own exit row when it was journaled; otherwise (the
        forwarder died before the command ended) a row saying the status is
        unknown, with the same record id, so the run has exactly one final row.
        """
        if self.exit_already_delivered:
            return None
        source = f"{self.invocation}-forward"
        if self.exit_row is not None:
            return self.exit_row, source
        cmd = str(self.header.get("command") or "?")
        row: dict[str, Any] = command_row(
            status=-1,
            description="exit status unknown (the forwarder stopped before the command ended; "
            "rows replayed from its journal)",
            seconds=0.0,
            command=cmd,
        )
        row["Level"] = "WARNING"
        # The last time the live forwarder wrote: every replay makes the same row.
        from datetime import datetime, timezone

        when = datetime.fromtimestamp(self.last_time or time.time(), timezone.utc)
        row["TimeGenerated"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        row["Message"] = (
            f"command {cmd}: exit status unknown: the forwarder stopped before the command "
            "ended; its output up to then was replayed from the journal (--resume-journal)"
        )
        props = row["Properties"]
        props["exit_status"] = None
        props.pop("duration_seconds", None)
        props["status_unknown"] = True
        props["journal"] = os.path.basename(self.reader.name)
        return row, source

    def close(self) -> None:
        if self._close_fh is not None:
            with contextlib.suppress(OSError):
                self._close_fh.close()


# -- wiring, for the CLI -----------------------------------------------------------------


@dataclass
class Resume:
    """A journal opened for ``--resume-journal``: its reader and the live run's settings."""

    path: str
    fh: IO[bytes]
    reader: JournalReader
    trusted: dict[str, str]

    def source(self, store: CheckpointStore | None, destination: str) -> JournalSource:
        return JournalSource(
            self.reader,
            store=store,
            key=os.path.abspath(self.path),
            destination=destination,
            close_fh=self.fh,
        )


def prepare_resume(
    config: Any, environ: Mapping[str, str] | None = None, fh: IO[bytes] | None = None
) -> Resume:
    """Open ``config.resume_journal`` and take over the live run's settings.

    The context the live run trusted, the command's ``-e`` values (redaction),
    the multi-line timeout and input format come from the journal's header:
    the replay must make the rows the live run made.
    """
    from hal_logging.pipeline.sources.command_env import parse_command_env

    path = config.resume_journal
    if fh is None:
        fh, reader = open_journal(path)
    else:  # an archive's stream
        reader = JournalReader(fh, name=path)
        reader.read_header()
    hdr = reader.header
    argv = [str(a) for a in hdr.get("argv") or []]
    config.command_env = parse_command_env(argv, dict(os.environ if environ is None else environ))
    with contextlib.suppress(TypeError, ValueError):
        config.multiline_timeout = float(hdr.get("multiline_timeout", config.multiline_timeout))
    config.input_format = str(hdr.get("input_format") or config.input_format)
    trusted = {str(k): str(v) for k, v in (hdr.get("trusted") or {}).items() if v}
    return Resume(path, fh, reader, trusted)


def journal_header(config: Any, source: Any, trusted: Mapping[str, str]) -> dict[str, Any]:
    argv = list(source.argv)
    return {
        "format": 1,
        "invocation": source.invocation,
        "command": os.path.basename(argv[0]) if argv else "?",
        "argv": argv,
        "merged": bool(source.merged),
        "trusted": dict(trusted),
        "multiline_timeout": config.multiline_timeout,
        "input_format": config.input_format,
        "started": time.time(),
    }


def start_live_journal(
    config: Any, source: Any, trusted: Mapping[str, str], destination: str, base_dir: str
) -> tuple[JournalWriter, CheckpointStore | None]:
    """Create wrap mode's journal and its checkpoint, and attach both to ``source``."""
    from hal_logging.pipeline.checkpoint import default_checkpoint_path

    path = config.journal or default_journal_path(base_dir, source.invocation)
    writer = JournalWriter(path, journal_header(config, source, trusted))
    store: CheckpointStore | None = None
    if not config.no_checkpoint:
        try:
            store = CheckpointStore(
                config.checkpoint or default_checkpoint_path(path), destination
            ).open()
        except BaseException:
            writer.close()
            raise
    source.journal = writer
    # Ticks are journaled while one can still close a traceback group (see CommandSource).
    source.journal_tick_window = float(config.multiline_timeout) + 0.2
    source.journal_inputs = {
        s: JournalInput(checkpoint_key(writer.path, s, destination), store, destination)
        for s in STREAMS
    }
    return writer, store


__all__ = [
    "JournalError",
    "JournalInput",
    "JournalReader",
    "JournalSource",
    "JournalWriter",
    "default_journal_path",
    "open_journal",
]
