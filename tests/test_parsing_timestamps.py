"""canonical(): the wire time's shape check, with its memory of valid seconds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging.pipeline.parsing.timestamps import _valid_head, canonical

_HEADS = [
    "2024-05-01T12:00:00",
    "2024-05-01T12:00:01",
    "2024-02-29T23:59:59",
    "2023-02-29T12:00:00",  # no such day
    "2024-05-01T24:00:00",  # no such hour
    "2024-05-01 12:00:00",
    "2024-05-0\uff11T12:00:00",  # a non-ASCII digit
]
_FRACTIONS = [
    ".123456Z",
    ".000000Z",
    ".12345xZ",
    ".\uff11\uff12\uff13\uff14\uff15\uff16Z",
    ".123456",
    ".1234567Z",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_HEADS), st.sampled_from(_FRACTIONS)), max_size=12))
def test_canonical_does_not_depend_on_what_it_saw_before(
    values: list[tuple[str, str]],
) -> None:
    """Heads alternating (a Docker line's two times) or not: each answer is the
    answer of a fresh check."""
    for head, frac in values:
        value = head + frac
        want = (
            len(value) == 27
            and _valid_head(head)
            and frac[1:7].isdigit()
            and frac[1:7].isascii()
            and frac.endswith("Z")
        )
        assert canonical(value) is want, value
