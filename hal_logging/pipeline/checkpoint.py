"""Checkpoints: how far a file was *delivered*, and which file that was.

Why this shape (docs/facts.md §5: Fluent Bit and the OTel Collector lose data because
they save offsets when lines are read, or keep them in memory):

* The runner commits an offset only after the sink confirmed every record
  before it, so a crash or SIGKILL at any point costs at most a re-send of
  unconfirmed batches, never a loss. The local workspace ignores re-sent
  records by ``record_id``; Azure duplicates are removable by it.
* A checkpoint file is written atomically: temporary file, ``fsync``, rename,
  ``fsync`` of the directory. A crash leaves the old or the new version, never
  half of one.
* A file is recognised by identity, not by name: device and inode plus a hash of
  its first line (up to 1 KB), and a hash of the bytes just before the saved
  offset. A rotated or replaced file (new inode, or same inode rewritten by
  copytruncate) does not match and is read from its start.

The identity string (``dev:ino:hash``) is also the ``source`` that record ids are
derived from, so the same bytes of the same file always get the same ids, in a
clean run and in a resumed one. When the VM side vouches for a context (run id,
task id...), a digest of it is part of the source (``dev:ino:hash#ctx``,
:func:`context_tag`; ``#`` alone for none): the same bytes shipped under a corrected ``--task-id`` are
other rows (in Azure as in the workspace), not duplicates of the first ones,
and a checkpoint written under another context does not resume.

A checkpoint belongs to one destination (:mod:`hal_logging.pipeline.destination`):
one file (``FILE.hal-checkpoint``) holds the entries of every destination the
input was shipped to, under ``destinations[<destination id>].files``, so the
same input shipped to a second destination is shipped whole, and a rerun to the
first still resumes. A file written by an older version (``{"version": 1,
"files": ...}``) does not say its destination: its entries are kept in the file
(under :data:`LEGACY_DESTINATION`) but resume nothing; the input is shipped from
its start once, under the record ids it had then (the workspace recognises rows
it already holds; Azure stores them again, removable by record id), which can
duplicate but never lose. Such a source carries no context tag, so later runs
resume it whatever their context.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hal_logging import _json

#: Bytes of a file's first line that identify it.
HEAD_BYTES = 1024
#: Bytes just before a saved offset that must still be there to resume.
TAIL_BYTES = 64
CHECKPOINT_SUFFIX = ".hal-checkpoint"
FORMAT_VERSION = 2
#: Where a version-1 file's entries are kept: nobody knows which destination they were for.
LEGACY_DESTINATION = "unknown:version-1"


def context_tag(trusted: Mapping[str, str]) -> str:
    """A short digest of the trusted context ("" when there is none), for record-id sources."""
    items = sorted((k, v) for k, v in trusted.items() if v)
    if not items:
        return ""
    text = "\0".join(f"{k}={v}" for k, v in items)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def source_context(source: str) -> str | None:
    """The context tag inside a record-id source (``dev:ino:hash#ctx~gen``; "" for no
    context), or None for a source written before sources carried one."""
    base = source.split("~", 1)[0]
    return base.split("#", 1)[1] if "#" in base else None


def source_identity(source: str) -> str:
    """The file identity part of a record-id source (``dev:ino:hash``)."""
    return source.split("~", 1)[0].split("#", 1)[0]


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What makes a file *this* file: where it lives on disk and how it begins."""

    dev: int
    ino: int
    head_len: int
    head_hash: str

    @property
    def source(self) -> str:
        """The record-id source of the file's first generation."""
        return f"{self.dev}:{self.ino}:{self.head_hash}"


def read_head(fd: int) -> bytes:
    """The file's first line (terminator included), at most HEAD_BYTES."""
    head = os.pread(fd, HEAD_BYTES, 0)
    nl = head.find(b"\n")
    return head if nl < 0 else head[: nl + 1]


def identify(fd: int, *, final: bool) -> FileIdentity | None:
    """The identity of an open file, or None while its first line is still being written.

    A first line is complete at its newline or at HEAD_BYTES; ``final`` (the
    file will not grow, or we stop waiting) accepts whatever is there.
    """
    st = os.fstat(fd)
    head = read_head(fd)
    if not final and not head.endswith(b"\n") and len(head) < HEAD_BYTES:
        return None
    return FileIdentity(st.st_dev, st.st_ino, len(head), _hash(head))


def tail_hash(fd: int, offset: int) -> tuple[int, str]:
    """Length and hash of the bytes just before ``offset`` (to detect a rewritten file)."""
    n = min(TAIL_BYTES, offset)
    data = os.pread(fd, n, offset - n) if n else b""
    return len(data), _hash(data)


def make_entry(path: str, ident: FileIdentity, source: str, fd: int, offset: int) -> dict[str, Any]:
    """A checkpoint entry for ``path`` delivered up to ``offset``."""
    tlen, thash = tail_hash(fd, offset)
    return {
        "path": path,
        "dev": ident.dev,
        "ino": ident.ino,
        "head_len": ident.head_len,
        "head_hash": ident.head_hash,
        "source": source,
        "offset": offset,
        "tail_len": tlen,
        "tail_hash": thash,
        "updated": time.time(),
    }


def resume_point(entry: dict[str, Any] | None, fd: int) -> tuple[int, str] | None:
    """``(offset, source)`` to resume from if ``entry`` describes the open file, else None."""
    if not entry:
        return None
    try:
        st = os.fstat(fd)
        offset = int(entry["offset"])
        if (int(entry["dev"]), int(entry["ino"])) != (st.st_dev, st.st_ino):
            return None
        if offset < 0 or st.st_size < offset:
            return None  # truncated since: a new generation
        head_len = int(entry["head_len"])
        if _hash(os.pread(fd, head_len, 0)) != entry["head_hash"]:
            return None
        tlen = int(entry.get("tail_len", 0))
        if tlen and _hash(os.pread(fd, tlen, offset - tlen)) != entry.get("tail_hash"):
            return None
        source = str(entry["source"])
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return offset, source


def state_dir() -> Path:
    """Per-user state directory (XDG), for checkpoints of inputs in read-only places."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "hal-logging" / "checkpoints"


def default_checkpoint_path(input_path: str) -> str:
    """``<input>.hal-checkpoint`` beside the input, or the state dir if that is not writable."""
    p = Path(input_path).absolute()
    if os.access(p.parent, os.W_OK):
        return str(p) + CHECKPOINT_SUFFIX
    digest = hashlib.blake2b(str(p).encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return str(state_dir() / f"{p.name}.{digest}{CHECKPOINT_SUFFIX}")


class CheckpointError(Exception):
    """The checkpoint cannot be used (locked by another forwarder, unwritable)."""


class CheckpointStore:
    """One checkpoint file: per destination, entries keyed by absolute input path.

    ``entries`` are this run's destination's; the other destinations' are kept
    as they were and written back unchanged. An exclusive ``flock`` on
    ``<file>.lock`` is held while the store is open, so two forwarders never
    write the same checkpoint file at once (even for two destinations: the
    file holds both).
    """

    def __init__(self, path: str, destination: str = "") -> None:
        self.path = Path(path)
        self.destination = destination
        self.entries: dict[str, dict[str, Any]] = {}
        self.warning: str | None = None
        self._lock_fd: int | None = None
        self._others: dict[str, Any] = {}  # other destinations' sections, as read

    def open(self, *, lock: bool = True) -> CheckpointStore:
        """Load the file; with ``lock`` also take the exclusive lock (a dry run reads only)."""
        if not lock:
            self._load()
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CheckpointError(
                f"cannot use checkpoint {self.path}: {exc.strerror}; "
                "pass --checkpoint PATH in a writable directory"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise CheckpointError(
                f"checkpoint {self.path} is in use by another hal-logging-forward; "
                "wait for it to finish or give this run its own --checkpoint PATH"
            ) from exc
        self._lock_fd = fd
        self._load()
        return self

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.warning = (
                f"cannot read checkpoint {self.path} ({exc.strerror}): starting from the beginning"
            )
            return
        try:
            data = _json.loads(raw)
            if "destinations" in data:
                dests = data["destinations"]
                if not isinstance(dests, dict):
                    raise TypeError("destinations is not an object")
                mine = dests.get(self.destination) or {}
                entries = mine.get("files", {})
                self._others = {k: v for k, v in dests.items() if k != self.destination}
            else:  # version 1: no destination recorded
                legacy = data["files"]
                if not isinstance(legacy, dict):
                    raise TypeError("files is not an object")
                entries = {}
                if legacy:
                    self._others = {LEGACY_DESTINATION: {"files": legacy}}
                    self.warning = (
                        f"checkpoint {self.path} was written by an older hal-logging and does "
                        "not say which destination it was for: shipping from the start (rows "
                        "the destination already holds are recognised by record_id)"
                    )
            if not isinstance(entries, dict):
                raise TypeError("files is not an object")
            self.entries = {str(k): v for k, v in entries.items() if isinstance(v, dict)}
        except (ValueError, TypeError, KeyError, AttributeError):
            self.warning = (
                f"checkpoint {self.path} is unreadable: starting from the beginning "
                "(records already stored are recognised by record_id)"
            )

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def legacy_entry(self, key: str) -> dict[str, Any] | None:
        """``key``'s entry in a version-1 file (destination unknown), if any."""
        section = self._others.get(LEGACY_DESTINATION)
        files = section.get("files") if isinstance(section, dict) else None
        entry = files.get(key) if isinstance(files, dict) else None
        return entry if isinstance(entry, dict) else None

    def commit(self, updates: dict[str, dict[str, Any]]) -> None:
        """Merge ``updates`` and write the file atomically and durably."""
        self.entries.update(updates)
        dests = {**self._others, self.destination: {"files": self.entries}}
        payload = _json.dumps({"version": FORMAT_VERSION, "destinations": dests})
        directory = str(self.path.parent)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _fsync_dir(directory: str) -> None:
    if sys.platform.startswith("win"):  # pragma: no cover - POSIX only
        return
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
