"""Framer: exact offsets, carriage returns, chunk boundaries, long lines."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging.pipeline.framing import Framer
from hal_logging.pipeline.model import Line


def frame(
    data: bytes,
    sizes: list[int] | None = None,
    start: int = 0,
    cap: int = 1 << 17,
    json_cap: int = 0,
) -> list[Line]:
    framer = Framer("stdout", start_offset=start, max_line_bytes=cap, max_json_bytes=json_cap)
    out: list[Line] = []
    sizes = sizes or [len(data) or 1]
    pos = i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.extend(framer.feed(data[pos : pos + size], 1.0))
        pos += size
        i += 1
    out.extend(framer.finish(2.0))
    return out


def test_lines_offsets_and_terminators() -> None:
    lines = frame(b"a\nbb\r\n\nccc")
    assert [ln.data for ln in lines] == [b"a", b"bb", b"", b"ccc"]
    assert [(ln.start, ln.end) for ln in lines] == [(0, 2), (2, 6), (6, 7), (7, 10)]
    assert lines[-1].received == 2.0  # the last line came from finish()
    assert all(ln.stream == "stdout" and ln.length == -1 for ln in lines)


def test_start_offset_is_the_source_position() -> None:
    lines = frame(b"x\ny\n", start=1000)
    assert [(ln.start, ln.end) for ln in lines] == [(1000, 1002), (1002, 1004)]


@pytest.mark.parametrize("split", range(1, 12))
def test_crlf_and_cr_split_across_chunks(split: int) -> None:
    data = b"one\r\nbar 1\rbar 2\r\ntwo\r"
    lines = frame(data, [split, 100])
    assert [ln.data for ln in lines] == [b"one", b"bar 2", b"two"]
    assert lines[-1].end == len(data)


def test_progress_bar_keeps_final_state_from_real_tqdm() -> None:
    import io

    from tqdm import tqdm

    buf = io.StringIO()
    for _ in tqdm(range(50), file=buf, mininterval=0, ascii=True, desc="steps"):
        pass
    raw = buf.getvalue().encode() + b"done\n"
    assert raw.count(b"\r") > 10  # it really rewrote the line
    for sizes in ([len(raw)], [1], [7, 3]):
        lines = frame(raw, sizes)
        assert len(lines) == 2
        assert lines[0].data.startswith(b"steps: 100%") and b"50/50" in lines[0].data
        assert lines[0].start == 0 and lines[1].end == len(raw)
        assert lines[1].data == b"done"


def test_blank_rewrite_does_not_hide_the_last_state() -> None:
    # "clear line" idioms: spaces or ESC[K after the last state.
    assert frame(b"50%\r100%\r    \r\n")[0].data == b"100%"
    assert frame(b"50%\r100%\r\x1b[K\n")[0].data == b"100%"
    assert frame(b"\r\r\n")[0].data == b""


def test_long_line_keeps_head_and_counts_length() -> None:
    lines = frame(b"x" * 1000 + b"\nshort\n", [64], cap=100)
    assert lines[0].data == b"x" * 100 and lines[0].length == 1000
    assert (lines[0].start, lines[0].end) == (0, 1001)
    assert lines[1].data == b"short" and lines[1].length == -1


def test_json_lines_get_a_larger_head() -> None:
    body = b'{"k":"' + b"v" * 500 + b'"}'
    lines = frame(body + b"\n" + body + b"\nx" + body + b"\n", [64], cap=100, json_cap=1000)
    assert [ln.data for ln in lines[:2]] == [body, body]
    assert lines[2].data == (b"x" + body)[:100] and lines[2].length == len(body) + 1
    [big] = frame(b"{" + b"a" * 5000 + b"\n", [700], cap=100, json_cap=1000)
    assert len(big.data) == 1000 and big.length == 5001


def test_fifty_megabyte_line_in_bounded_memory() -> None:
    framer = Framer("stderr")
    chunk = b"y" * (1 << 20)
    tracemalloc.start()
    try:
        got: list[Line] = []
        for _ in range(50):
            got.extend(framer.feed(chunk, 1.0))
        got.extend(framer.feed(b"\nnext\n", 1.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [ln.data[:4] for ln in got] == [b"yyyy", b"next"]
    assert got[0].length == 50 << 20 and len(got[0].data) == framer._max
    assert got[0].end == (50 << 20) + 1
    # The chunk itself is 1 MB (allocated by the test); the framer adds at most its head.
    assert peak < 4 << 20, peak


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_any_bytes_any_chunking_offsets_contiguous(data: bytes, sizes: list[int]) -> None:
    lines = frame(data, sizes, start=7, cap=16)
    pos = 7
    for ln in lines:
        assert ln.start == pos and ln.end > ln.start
        assert len(ln.data) <= 16
        assert b"\n" not in ln.data and b"\r" not in ln.data
        pos = ln.end
    assert pos == 7 + len(data)
    # Chunking never changes the result.
    whole = frame(data, [len(data) or 1], start=7, cap=16)
    assert [(ln.data, ln.start, ln.end, ln.length) for ln in lines] == [
        (ln.data, ln.start, ln.end, ln.length) for ln in whole
    ]
