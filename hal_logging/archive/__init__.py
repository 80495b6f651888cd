"""``--archive DEST``: the exact bytes a task printed, kept past the VM, with a manifest.

What is archived. In wrap mode the journal (every read of both streams, with
the read times; see :mod:`hal_logging.pipeline.journal`), so an archive can be
shipped again with the live run's record ids and streams; in files mode the
input file itself. One archive per task, named from its context
(``<RunID>/<TaskID>/<kind>-<id>.hal-archive.gz``) and a manifest beside it
(``.hal-archive.json``): sizes, sha256 of the raw bytes per stream, the byte
range of each stream, the range of the rows' record ids, and the context.

Why gzip members. The archive is uploaded while the run goes on, one block
every few seconds or few MB, so a VM deleted mid-run loses only its last
seconds. Each block is an independent gzip member (concatenated members are a
valid gzip file, ``gzip -d`` and Python read them whole), so a rerun resumes
after the last block the destination has, without re-reading what came before.

Destinations (:mod:`hal_logging.archive.targets`): a local folder, or an Azure
Blob Storage container URL, uploaded in staged blocks with the ingestion
path's credentials (``pip install 'hal-logging[archive]'``, imported only then).
Reading back: :mod:`hal_logging.archive.read`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hal_logging import _json

ARCHIVE_SUFFIX = ".hal-archive.gz"
MANIFEST_SUFFIX = ".hal-archive.json"
MANIFEST_FORMAT = "hal-logging-archive"
#: A block goes out when this many raw bytes are waiting ...
BLOCK_BYTES = 4 * 1024 * 1024
#: ... or this many seconds after the last one (what a VM deleted mid-run loses).
BLOCK_SECONDS = 5.0
#: gzip level: log text compresses to a few percent at 5 already, at half level 9's CPU.
GZIP_LEVEL = 5
#: Azure's limit of blocks in one block blob.
MAX_BLOCKS = 50_000


class ArchiveError(Exception):
    """The archive cannot be written or read; the message says what to fix."""


def is_blob_url(dest: str) -> bool:
    return dest.startswith(("https://", "http://"))


def is_archive_path(arg: str) -> bool:
    """A FILE argument that names an archive (its data, its manifest, or a blob URL of them)."""
    return arg.endswith((ARCHIVE_SUFFIX, MANIFEST_SUFFIX))


def _safe(value: str | None, default: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._=-]+", "_", value or "").strip("._")
    return text[:100] or default


def archive_name(context: Mapping[str, str], kind: str, ident: str) -> str:
    """``<RunID>/<TaskID>/<kind>-<ident>.hal-archive.gz``: one per task, stable across reruns."""
    digest = hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()
    return (
        f"{_safe(context.get('RunID'), 'no-run')}/{_safe(context.get('TaskID'), 'no-task')}/"
        f"{kind}-{digest}{ARCHIVE_SUFFIX}"
    )


def manifest_name(name: str) -> str:
    return name[: -len(ARCHIVE_SUFFIX)] + MANIFEST_SUFFIX


def mask_argv(argv: list[str]) -> list[str]:
    """The command line with ``-e NAME=VALUE`` values removed (``-e NAME``), for uploads."""
    out: list[str] = []
    take = False
    for a in argv:
        if take:
            out.append(a.partition("=")[0])
            take = False
        elif a in ("-e", "--env"):
            out.append(a)
            take = True
        elif a.startswith("--env="):
            out.append("--env=" + a[len("--env=") :].partition("=")[0])
        elif a.startswith("-e") and not a.startswith("--") and "=" in a:
            out.append(a.partition("=")[0])
        else:
            out.append(a)
    return out


class Content:
    """The bytes to archive: a file that may still grow, read by position.

    For a journal, its header is replaced by one without the command's ``-e``
    values (they may be secrets the container never printed), so uploads do
    not carry them; the records (the bytes printed) are unchanged.
    """

    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.prefix = b""
        self.skip = 0
        if kind == "journal":
            with open(path, "rb") as fh:
                magic = fh.readline()
                header = fh.readline()
            self.skip = len(magic) + len(header)
            hdr = _json.loads(header)
            hdr["argv"] = mask_argv([str(a) for a in hdr.get("argv") or []])
            self.prefix = magic + _json.dumps(hdr) + b"\n"
            self.header = hdr
        else:
            self.header = {}

    def size(self) -> int:
        return len(self.prefix) + max(0, os.path.getsize(self.path) - self.skip)

    def read(self, pos: int, n: int) -> bytes:
        out = b""
        if pos < len(self.prefix):
            out = self.prefix[pos : pos + n]
            n -= len(out)
            pos = len(self.prefix)
        if n > 0:
            with open(self.path, "rb") as fh:
                fh.seek(pos - len(self.prefix) + self.skip)
                out += fh.read(n)
        return out


@dataclass
class Progress:
    """What the destination holds: raw bytes archived, compressed bytes, blocks."""

    raw: int = 0
    compressed: int = 0
    blocks: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)


class Archiver:
    """Archives one :class:`Content` to one target as it grows (a thread), then a manifest.

    ``finish`` sends what is left and the manifest within a deadline; if that
    fails, :attr:`complete` is False and :meth:`where_kept` says where the bytes
    still are.
    """

    def __init__(
        self,
        content: Content,
        target: Any,
        name: str,
        manifest_extra: Callable[[], dict[str, Any]],
        *,
        block_bytes: int = BLOCK_BYTES,
        block_seconds: float = BLOCK_SECONDS,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.content = content
        self.target = target
        self.name = name
        self.manifest_extra = manifest_extra
        self.block_bytes = block_bytes
        self.block_seconds = block_seconds
        self.notify = notify or (lambda _m: None)
        self.progress = Progress()
        self.error: str | None = None
        self.complete = False
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._resumed = False
        #: How to finish the archive later (said with where the bytes are kept).
        self.rerun_hint = ""

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Find how far a previous run got (resume), then follow the content.

        A destination that cannot be used yet (unreachable, 403, no container) is
        said once on stderr; the rows are shipped all the same, and the end of the
        run tries the archive again (or says where the bytes are kept)."""
        try:
            self._resume()
        except ArchiveError as exc:
            self.error = str(exc)
            self.notify(f"archive: {exc}")
            if getattr(self.target, "permanent", False):
                return
        self._thread = threading.Thread(target=self._loop, name="hal-archive", daemon=True)
        self._thread.start()

    def _resume(self) -> None:
        raw, compressed, blocks = self.target.resume(self.name)
        if raw > self.content.size():
            # The destination holds more than the content has: not this content's archive.
            raise ArchiveError(
                f"the archive {self.target.describe(self.name)} holds {raw} bytes but the "
                f"content has only {self.content.size()}: it is another run's; remove it "
                "or archive to another DEST"
            )
        p = self.progress
        p.raw, p.compressed, p.blocks = raw, compressed, blocks
        p.sha256 = hashlib.sha256()
        pos = 0
        while pos < raw:  # the sha256 covers every byte, including those sent before
            data = self.content.read(pos, min(BLOCK_BYTES, raw - pos))
            if not data:
                break
            p.sha256.update(data)
            pos += len(data)
        self._resumed = True

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.2):
            try:
                waiting = self.content.size() - self.progress.raw
            except OSError:
                continue
            if waiting >= self.block_bytes or (
                waiting > 0 and time.monotonic() - last >= self.block_seconds
            ):
                self._send_some(final=False)
                last = time.monotonic()

    def _send_some(self, *, final: bool) -> bool:
        """Send waiting bytes as blocks; False (and :attr:`error`) when the target failed."""
        with self._lock:
            t0 = time.thread_time()
            try:
                if not self._resumed:
                    self._resume()
                while True:
                    p = self.progress
                    size = self.content.size()
                    if size <= p.raw:
                        return True
                    if p.blocks >= MAX_BLOCKS - 1 and not final:
                        return True  # keep the last block for the end
                    n = size - p.raw if final else min(size - p.raw, self.block_bytes * 4)
                    data = self.content.read(p.raw, n)
                    if not data:
                        return True
                    gz = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
                    if p.blocks >= MAX_BLOCKS:
                        raise ArchiveError(
                            f"{self.target.describe(self.name)} has {MAX_BLOCKS} blocks, Azure's "
                            "limit for one blob: archive this task to a new DEST"
                        )
                    self.target.append(self.name, p.raw, p.raw + len(data), gz, p.blocks)
                    p.sha256.update(data)
                    p.raw += len(data)
                    p.compressed += len(gz)
                    p.blocks += 1
                    if self.error:
                        self.notify(f"archive: {self.target.describe(self.name)} reachable again")
                    self.error = None
                    if not final:
                        return True
            except ArchiveError as exc:
                if self.error != str(exc):
                    self.notify(f"archive: {exc}")
                self.error = str(exc)
                return False
            finally:
                self.cpu_seconds += time.thread_time() - t0

    def finish(self, deadline: float) -> bool:
        """Send the rest and the manifest, retrying until ``deadline`` (monotonic)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        while True:
            if self._send_some(final=True):
                try:
                    self.target.put_manifest(self.name, self.manifest())
                    self.complete = True
                    return True
                except ArchiveError as exc:
                    self.error = str(exc)
            if time.monotonic() >= deadline or getattr(self.target, "permanent", False):
                return False
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    # -- manifest ----------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        p = self.progress
        m: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "kind": self.content.kind,
            "archive": self.name.rsplit("/", 1)[-1],
            "content_bytes": p.raw,
            "content_sha256": p.sha256.hexdigest(),
            "compressed_bytes": p.compressed,
            "blocks": p.blocks,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        m.update(self.manifest_extra())
        return m

    def where_kept(self) -> str:
        done = self.progress.raw
        total = self.content.size()
        how = self.rerun_hint or "rerun the same command (with --archive) to finish it"
        return (
            f"{self.content.path} ({total} bytes; the archive {self.target.describe(self.name)} "
            f"holds the first {done}): {how}"
        )


def file_streams(path: str, stream: str, source: str) -> dict[str, Any]:
    """Manifest fields of a file input: its one stream, its sha256 and its record-id range."""
    from hal_logging.pipeline.parsing import record_id

    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {
        "streams": {
            stream: {
                "bytes": size,
                "sha256": h.hexdigest(),
                "range": [0, size],
                "record_ids": [record_id(source, stream, 0), record_id(source, stream, size)],
            }
        },
        "source": {"source": source, "stream": stream, "path": os.path.abspath(path)},
    }


def journal_streams(path: str) -> dict[str, Any]:
    """Manifest fields of a journal: per stream the bytes printed, their sha256 and ids."""
    from hal_logging.pipeline.journal import STREAMS, open_journal, stream_bytes
    from hal_logging.pipeline.parsing import record_id

    fh, reader = open_journal(path)
    with fh:
        sizes = stream_bytes(reader)
    inv = str(reader.header["invocation"])
    merged = bool(reader.header.get("merged"))
    streams: dict[str, Any] = {}
    for s in STREAMS:
        n, sha = sizes[s]
        tag = "unknown" if merged and s == "stdout" else s
        src = f"{inv}-{s}"
        streams[s] = {
            "bytes": n,
            "sha256": sha,
            "range": [0, n],
            "record_ids": [record_id(src, tag, 0), record_id(src, tag, n)],
        }
    return {
        "streams": streams,
        "source": {
            "invocation": inv,
            "command": reader.header.get("command"),
            "final_row_record_id": record_id(f"{inv}-forward", "unknown", 0),
        },
        "torn": reader.torn or None,
    }


__all__ = [
    "ARCHIVE_SUFFIX",
    "MANIFEST_SUFFIX",
    "ArchiveError",
    "Archiver",
    "Content",
    "archive_name",
    "file_streams",
    "is_archive_path",
    "is_blob_url",
    "journal_streams",
    "manifest_name",
]
