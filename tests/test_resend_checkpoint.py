"""Checkpoint cadence: after every confirmed batch for a remote sink, coalesced locally.

For Azure a row confirmed but not yet checkpointed is re-sent after a SIGKILL
and billed twice, so the runner commits the checkpoint as soon as a batch is
confirmed. For the local workspace (which ignores re-sent ids) the writes stay
coalesced. The coalescing interval is made huge here, so neither check
depends on timing: a remote sink's checkpoint must move while reading, a local
one's must not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from hal_logging import _json
from hal_logging.pipeline import runner as runner_mod
from hal_logging.pipeline.checkpoint import CheckpointStore
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import Record, Sink, WriteResult
from hal_logging.pipeline.sources import file as file_source
from hal_logging.pipeline.sources.file import FileSource
from tests.forward_helpers import wire_line
from tests.waiting import wait_for

WAIT = 30.0  # a generous deadline for a condition, not a timing assertion


def checkpoint_offset(path: Path) -> int:
    try:
        data = _json.loads(path.read_bytes())
    except OSError:
        return 0
    entries = [e for d in data["destinations"].values() for e in d["files"].values()]
    return max((int(e.get("offset", 0)) for e in entries), default=0)


class ProbeSink(Sink):
    """Records, at each write, whether the previous batch's end was checkpointed.

    With ``wait``, a write first waits (up to WAIT seconds) for it: the reading
    thread commits confirmed batches while this one is in flight.
    """

    max_in_flight = 1

    def __init__(self, name: str, checkpoint: Path, wait: bool) -> None:
        self.name = name
        self.checkpoint = checkpoint
        self.wait = wait
        self.prev_end = 0
        self.seen: list[tuple[int, int]] = []  # (previous batch's end, checkpoint offset)
        self.lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> WriteResult:
        with self.lock:
            if self.prev_end:
                end = self.prev_end
                if self.wait:
                    with contextlib.suppress(AssertionError):  # recorded below
                        wait_for(lambda: checkpoint_offset(self.checkpoint) >= end, WAIT)
                self.seen.append((end, checkpoint_offset(self.checkpoint)))
            self.prev_end = max(r.end for r in records)
        return WriteResult(delivered=len(records))


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sink_name: str) -> ProbeSink:
    monkeypatch.setattr(runner_mod, "CHECKPOINT_INTERVAL", 1e9)
    monkeypatch.setattr(file_source, "CHUNK_BYTES", 4096)  # one batch per chunk
    log = tmp_path / "out.log"
    log.write_bytes(b"\n".join(wire_line(i) for i in range(600)) + b"\n")
    cp = tmp_path / "out.log.hal-checkpoint"
    store = CheckpointStore(str(cp)).open(lock=True)
    config = ForwardConfig(files=[str(log)], batch_rows=10, sink=sink_name)
    sink = ProbeSink(sink_name, cp, wait=sink_name == "azure")
    source = FileSource([str(log)], lambda _p: store, threading.Event())
    try:
        runner_mod.Runner(config.inputs, config.delivery, source, sink, trusted={}, filters=[]).run()
    finally:
        source.close()
        store.close()
    assert len(sink.seen) > 10
    assert checkpoint_offset(cp) == log.stat().st_size  # always written at the end
    return sink


def test_remote_sink_checkpoints_every_confirmed_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = run(tmp_path, monkeypatch, "azure")
    late = [(end, off) for end, off in sink.seen if off < end]
    assert not late, f"checkpoint behind a confirmed batch: {late[:3]}"


def test_local_sink_checkpoints_stay_coalesced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = run(tmp_path, monkeypatch, "sqlite")
    assert {off for _end, off in sink.seen} == {0}  # nothing written before the end
