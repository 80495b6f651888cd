"""The durable line file every writer of undelivered rows uses: the bytes it writes and reads back.

Real files in a temporary folder, real threads; the format is the one
``hal-logging-forward --resend`` reads (checked end to end in test_resend_files.py
and test_pipeline_spool.py).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest

from hal_logging import _json, schema
from hal_logging.delivery import DeliveryError, Row
from hal_logging.delivery.wirefile import LineFile, WireFile, read_lines, wire_line


def row(i: int) -> Row:
    out = schema.empty_row()
    out.update(TimeGenerated="2026-01-02T03:04:05.000000Z", Message=f"m{i}")
    out["Properties"] = {"hal": {"record_id": f"r{i}"}}
    return out


def test_wire_line_puts_the_marker_first() -> None:
    assert wire_line(b'{"a":1}') == b'{"_hal":1,"a":1}'
    assert wire_line(b"{}") == b'{"_hal":1}'
    assert _json.loads(wire_line(_json.dumps(row(1)))) == {"_hal": 1, **row(1)}


def test_rows_and_fragments_are_the_same_wire_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    f = WireFile(path)
    assert f.append_rows([row(0), orjson.Fragment(_json.dumps(row(1))), {}]) == 3
    f.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert lines[:-1] == [
        schema.WIRE_PREFIX + _json.dumps(row(0))[1:],
        schema.WIRE_PREFIX + _json.dumps(row(1))[1:],
        b'{"_hal":1}',
    ]


def test_read_back_in_chunks_from_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    f = WireFile(path)
    f.append([b"a", b"bb"])
    f.write(b"\n\nccc\r\n")  # blank lines are skipped, CRLF ends a line too
    f.append([b"dddd"])
    first, offset = f.read(0, 2)
    assert first == [b"a", b"bb"]
    rest, end = read_lines(path, offset)
    assert rest == [b"ccc", b"dddd"] and end == path.stat().st_size
    assert read_lines(path, end) == ([], end)
    assert read_lines(tmp_path / "missing", 7) == ([], 7)  # unreadable: nothing, offset kept


def test_a_line_being_written_is_read_as_it_stands(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"_hal":1,"a":1}\n{"_hal":1,"b"')
    assert read_lines(path, 0) == ([b'{"_hal":1,"a":1}', b'{"_hal":1,"b"'], path.stat().st_size)


def test_open_per_write_lets_the_file_be_moved_away(tmp_path: Path) -> None:
    path = tmp_path / "dead" / "letter.jsonl"
    f = WireFile(path, keep_open=False, make_dirs=True)
    f.append([b"one"])
    path.rename(tmp_path / "taken.jsonl")
    f.append([b"two"])
    assert path.read_bytes() == b"two\n"
    assert (tmp_path / "taken.jsonl").read_bytes() == b"one\n"


def test_a_missing_folder_is_the_callers_error_unless_asked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LineFile(tmp_path / "no" / "such.jsonl").open()
    LineFile(tmp_path / "made" / "here.jsonl", make_dirs=True).open().close()
    assert (tmp_path / "made" / "here.jsonl").exists()


def test_a_kept_open_file_is_reopened_after_close(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    f = LineFile(path)
    f.append([b"a"])
    f.close()
    f.close()  # twice is harmless
    f.append([b"b"])
    f.close()
    assert path.read_bytes() == b"a\nb\n"


def test_a_given_stream_is_written_and_never_closed(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "wb") as stream, os.fdopen(read_fd, "rb") as reader:
        f = LineFile("-", stream=stream)
        assert not f.sync  # a pipe cannot be fsynced
        f.append([b"x", b"y"])
        f.close()
        assert not stream.closed
        f.append([b"z"])
        stream.close()
        assert reader.read() == b"x\ny\nz\n"


def test_writes_of_many_threads_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    f = WireFile(path, sync=False)
    start = threading.Barrier(4)

    def writer(t: int) -> None:
        start.wait()
        for i in range(200):
            f.append_rows([{"t": t, "i": i, "pad": "p" * (i * 37 % 3000)}])

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    f.close()
    rows = [_json.loads(x) for x in path.read_bytes().splitlines()]
    assert len(rows) == 800
    for t in range(4):
        assert [r["i"] for r in rows if r["t"] == t] == list(range(200))


def test_delivery_error_says_whether_retrying_helps() -> None:
    err = DeliveryError("check the role", fatal=True, status=403)
    assert (str(err), err.fatal, err.status) == ("check the role", True, 403)
    assert not DeliveryError("later").fatal
