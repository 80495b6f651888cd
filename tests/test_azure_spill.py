"""The handler's spill backlog: written, rotated for resending, sent chunk by chunk, parked at exit.

Real files; the handler's behaviour around it (when it spills and resends) is in
test_vm_handler.py and test_vm_handler_emulator.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hal_logging.azure.spill import Spill, default_spill_path


def lines(a: int, b: int) -> list[bytes]:
    return [b'{"_hal":1,"Message":"m%d"}' % i for i in range(a, b)]


def test_default_path_per_stream_and_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAL_LOGGING_SPILL_DIR", str(tmp_path / "d"))
    path = default_spill_path("Custom-X")
    assert path.parent == tmp_path / "d" and path.name.startswith("Custom-X-")
    assert path.name.endswith(f"-{os.getpid()}.jsonl")
    monkeypatch.delenv("HAL_LOGGING_SPILL_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_spill_path("S").parent == tmp_path / "state" / "hal-logging" / "spill"


def test_backlog_is_rotated_sent_in_chunks_and_removed(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "sub" / "spill.jsonl")
    counted: list[int] = []
    assert not spill.has_backlog() and spill.next_chunk(10) is None
    spill.write(lines(0, 5), counted.append)
    assert counted == [5] and spill.has_backlog()
    chunk = spill.next_chunk(3)
    assert chunk is not None and chunk[0] == lines(0, 3)
    assert spill.resend_path.exists() and not spill.path.exists()  # new spills go to a fresh file
    spill.write(lines(5, 6), counted.append)
    spill.advance(chunk[1])
    chunk = spill.next_chunk(3)
    assert chunk is not None and chunk[0] == lines(3, 5)
    spill.advance(chunk[1])
    assert spill.next_chunk(3) == ([], chunk[1])  # done: the resend file goes
    assert not spill.resend_path.exists() and spill.resending is None
    chunk = spill.next_chunk(3)  # then the rows spilled meanwhile
    assert chunk is not None and chunk[0] == lines(5, 6)


def test_unsent_rest_is_parked_at_the_head_oldest_first(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill.jsonl")
    spill.write(lines(0, 4), lambda n: None)
    chunk = spill.next_chunk(1)
    assert chunk is not None
    spill.advance(chunk[1])  # m0 sent
    spill.write(lines(4, 6), lambda n: None)  # spilled while resending
    assert spill.park() is None
    assert spill.path.read_bytes().splitlines() == lines(1, 6)
    assert not spill.resend_path.exists()
    assert spill.has_backlog()  # the merged file is the backlog again


def test_park_without_a_backlog_does_nothing(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill.jsonl")
    assert spill.park() is None and not spill.path.exists()


def test_a_spill_that_cannot_be_written_raises_and_counts_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    spill = Spill(tmp_path / "file" / "spill.jsonl")  # its folder is a file
    counted: list[int] = []
    with pytest.raises(OSError):
        spill.write(lines(0, 1), counted.append)
    assert counted == [] and spill.pending == 0
