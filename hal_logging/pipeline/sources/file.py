"""Finished files (``hal-logging-forward FILE...``): read each from its checkpoint to EOF.

The seed's Option B: ship a log after the run. A file already shipped to its
end is skipped; a file that changed identity since its checkpoint (rotated,
replaced, rewritten) is read from its start.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator

from hal_logging.pipeline.checkpoint import (
    CheckpointStore,
    identify,
    resume_point,
    source_context,
    source_identity,
)
from hal_logging.pipeline.sources import CHUNK_BYTES, Chunk, Closed, Event, FileInput, Opened


def open_input(
    path: str, fd: int, store: CheckpointStore | None, *, final: bool, context_tag: str = ""
) -> tuple[FileInput, int, str] | None:
    """Identify an open file and find where to start: (input, start offset, source).

    None while the first line is incomplete and ``final`` is False.
    ``context_tag`` (:func:`~hal_logging.pipeline.checkpoint.context_tag` of
    the trusted context) is part of the source: a checkpoint written under
    another context does not resume (``FileInput.context_changed``), and the
    rows get other record ids.
    """
    ident = identify(fd, final=final)
    if ident is None:
        return None
    key = os.path.abspath(path)
    size = os.fstat(fd).st_size
    inp = FileInput(key, fd, ident, store, size)
    base = f"{ident.source}#{context_tag}"
    entry = store.get(key) if store is not None else None
    resumed = resume_point(entry, fd)
    if resumed is not None:
        if source_context(resumed[1]) in (context_tag, None):  # None: written before tags
            return inp, resumed[0], resumed[1]
        inp.context_changed = True  # shipped before under another context: whole again
        return inp, 0, base
    if entry is None and store is not None:
        legacy = resume_point(store.legacy_entry(key), fd)
        if legacy is not None:
            # A version-1 checkpoint (destination unknown): from the start, under the
            # record ids that version gave (so rows it delivered are recognised).
            return inp, 0, legacy[1]
    if entry and source_identity(str(entry.get("source", ""))) == ident.source:
        # Same inode and first line, yet not the bytes we delivered (rewritten in
        # place, truncated and regrown): a new generation, so its record ids can
        # never collide with those of the old contents (which would drop rows).
        return inp, 0, f"{base}~{uuid.uuid4().hex[:8]}"
    return inp, 0, base


class FileSource:
    """Ship finished files, one after the other."""

    mode = "files"

    def __init__(
        self,
        paths: list[str],
        store_for: Callable[[str], CheckpointStore | None],
        stop: threading.Event,
        stream: str = "unknown",
        notify: Callable[[str], None] | None = None,
        context_tag: str = "",
    ) -> None:
        self.paths = paths
        self.context_tag = context_tag
        #: path -> offset a checkpoint let this run start from (the summary's ``resumed``)
        self.resumed: dict[str, int] = {}
        #: what could not be read, one line each (shown even with -q: failures)
        self.errors: list[str] = []
        self.store_for = store_for
        self.stop = stop
        self.stream = stream
        self.notify = notify or (lambda _msg: None)
        self.total_bytes = 0
        self.skipped_bytes = 0
        self.remaining: dict[str, int] = {}  # path -> bytes not read; -1: unreadable
        self.finished = False  # every file read to its end
        for p in paths:
            try:
                self.total_bytes += os.path.getsize(p)
            except OSError:
                pass

    def events(self) -> Iterator[Event]:
        for n, path in enumerate(self.paths):
            if self.stop.is_set():
                return
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                self._unreadable(path, exc, "skipped (nothing from it was shipped)")
                continue
            try:
                opened = open_input(
                    path, fd, self.store_for(path), final=True, context_tag=self.context_tag
                )
            except OSError as exc:  # e.g. EIO while reading the first line
                os.close(fd)
                self._unreadable(path, exc, "skipped (nothing from it was shipped)")
                continue
            assert opened is not None
            inp, pos, source = opened
            self.skipped_bytes += pos
            if pos:
                self.resumed[path] = pos
            if inp.context_changed:
                self.notify(
                    f"{path}: shipped before to this destination under another context "
                    "(run/task...): shipping it whole under this one (rows stored under the "
                    "old context stay)"
                )
            if pos and pos >= inp.size_hint:
                self.notify(f"{path}: already shipped to its end (checkpoint), nothing to do")
                inp.close()
                continue
            gen = f"{n}:{path}"
            yield Opened(gen, self.stream, source, pos, inp)
            complete = True
            while True:
                if self.stop.is_set():
                    self.remaining[path] = max(0, os.fstat(fd).st_size - pos)
                    complete = False
                    break
                try:
                    data = os.pread(fd, CHUNK_BYTES, pos)
                except OSError as exc:  # a failing disk or a special file: keep what was read
                    self._unreadable(
                        path, exc, f"stopped at byte {pos} (what came before was shipped)"
                    )
                    complete = False
                    break
                if not data:
                    break
                pos += len(data)
                yield Chunk(gen, data)
            yield Closed(gen, complete)
            if self.stop.is_set():
                return
        self.finished = True

    def _unreadable(self, path: str, exc: OSError, what: str) -> None:
        msg = f"cannot read {path}: {exc.strerror or exc}; {what}"
        self.errors.append(msg)
        self.notify(msg)
        self.remaining[path] = -1

    def close(self) -> None:
        pass
