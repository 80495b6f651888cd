"""Framer: what a pseudo-terminal does to output (``docker run -t``).

A terminal ends lines with ``\\r\\n`` (its ``onlcr`` turns every ``\\n`` into
``\\r\\n``, even one the program already preceded by ``\\r``), while progress bars
still rewrite with a lone ``\\r``. A ``\\r\\n`` must be a plain line end, a bar
must still fold to its last state, and offsets must stay exact however the
bytes are cut into chunks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .test_framing_lines import frame

#: What the same program printed, through a pipe and through a terminal.
PIPE = (
    b'{"_hal":1,"Message":"one"}\n'
    b"\rdownloading:   0%|    | 0/4\rdownloading:  50%|##  | 2/4\rdownloading: 100%|####| 4/4\n"
    b"plain\n"
    b"bar 1\rbar 2\r\n"  # the program's own \r\n
    b'Traceback (most recent call last):\n  File "x.py", line 1\n    ~~~^~~\nValueError: v\n'
)
TTY = PIPE.replace(b"\n", b"\r\n")


def _datas(data: bytes, sizes: list[int] | None = None) -> list[bytes]:
    return [ln.data for ln in frame(data, sizes)]


def test_a_terminal_frames_the_same_lines_as_a_pipe() -> None:
    want = _datas(PIPE)
    assert want[1] == b"downloading: 100%|####| 4/4" and want[3] == b"bar 2"
    assert _datas(TTY) == want
    for size in range(1, 40):  # every cut, including between \r and \n
        assert _datas(TTY, [size]) == want, size


def test_crlf_lines_end_exactly_past_the_terminator() -> None:
    lines = frame(b"a\r\nbb\r\n\r\nccc\r\n")
    assert [(ln.data, ln.start, ln.end) for ln in lines] == [
        (b"a", 0, 3),
        (b"bb", 3, 7),
        (b"", 7, 9),
        (b"ccc", 9, 14),
    ]


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"bar 50%\rmore text\r\n", [b"more text"]),  # a bar, then text: folds
        (b"bar 50%\rbar 100%\r\r\n", [b"bar 100%"]),  # \r\n written, \r\r\n seen
        (b"bar 50%\r\x1b[K\r\n", [b"bar 50%"]),  # a blank last state keeps the bar
        (b"x\r\ny\rz\r\nw\n", [b"x", b"z", b"w"]),  # terminal and pipe ends mixed
        (b"\r\n\r\n", [b"", b""]),
    ],
)
def test_carriage_returns_through_a_terminal(data: bytes, want: list[bytes]) -> None:
    assert _datas(data) == want
    assert _datas(data, [1]) == want


def test_a_lone_cr_ending_a_chunk_keeps_the_next_lines_offsets() -> None:
    # tqdm starts each state with \r; a chunk that ends right after it must not
    # shift the offsets of the lines that follow (checkpoints rely on them).
    lines = frame(b"\rab\r\ncd\r\n", [1, 100])
    assert [(ln.data, ln.start, ln.end) for ln in lines] == [(b"ab", 0, 5), (b"cd", 5, 9)]
    lines = frame(b"\rab\ncd\n", [1, 100])
    assert [(ln.data, ln.start, ln.end) for ln in lines] == [(b"ab", 0, 4), (b"cd", 4, 7)]


_PIECES = st.sampled_from([b"a", b"{", b" ", b"\r", b"\n", b"\r\n", b"\x1b[K", b"xyz" * 3])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_PIECES, max_size=60).map(b"".join),
    st.lists(st.integers(1, 12), min_size=1, max_size=6),
)
def test_terminal_bytes_any_chunking_same_lines_and_offsets(data: bytes, sizes: list[int]) -> None:
    lines = frame(data, sizes, start=3, cap=8)
    byte_by_byte = frame(data, [1], start=3, cap=8)
    assert [(ln.data, ln.start, ln.end, ln.length) for ln in lines] == [
        (ln.data, ln.start, ln.end, ln.length) for ln in byte_by_byte
    ]
    pos = 3
    for ln in lines:
        assert ln.start == pos and ln.end > ln.start
        pos = ln.end
    assert pos == 3 + len(data)


def test_json_file_of_a_terminal_container_ends_lines_with_crlf_as_one_terminator() -> None:
    # docker run -t: the json-file driver stores the terminal's "\r\n"; the rows must be
    # those of the same lines through a pipe (a cut row reports the same real length).
    from hal_logging import schema

    from .parsing_helpers import run
    from .test_parsing_docker import T1, json_file

    long_line = "y" * (200 * 1024)
    lines = [long_line, "bar 1\rbar 2", "plain", '{"_hal":1,"Message":"wire","Level":"INFO"}']
    pipe = run(json_file([("stdout", T1, ln) for ln in lines]))
    tty = run(json_file([("stdout", T1, ln + "\r") for ln in lines]))  # json_file adds "\n"
    assert [r.row["Message"] for r in tty] == [r.row["Message"] for r in pipe]
    assert [r.row["Message"] for r in pipe][1:] == ["bar 2", "plain", "wire"]
    hal = tty[0].row["Properties"]["hal"]
    assert hal["original_length"]["Message"] == len(long_line)
    assert tty[0].row["Message"].endswith(schema.TRUNCATION_MARKER)
