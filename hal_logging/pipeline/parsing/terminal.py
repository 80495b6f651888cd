"""Terminal output -> plain text: decoding, escape sequences, carriage returns.

Containers print for terminals: colours (CSI ``ESC[...m``), cursor moves,
hyperlinks and titles (OSC ``ESC]...BEL``/``ESC]...ESC\\``), progress bars that
rewrite a line with ``\\r``. None of that belongs in a Message, so it is removed
here; the visible text stays. Invalid UTF-8 becomes U+FFFD (never a crash, never
a dropped line) and NUL characters are removed (they end strings in many tools).
"""

from __future__ import annotations

import re
from typing import Final

ESCAPES_RE: Final = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL / ST (titles, hyperlinks)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS / SOS / PM / APC strings
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor, erase)
    r"|\x1b[ -/]*[0-~]"  # other ESC sequences (charset, keypad...)
    r"|\x1b"  # a lone ESC at the end
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (cheap when there are none)."""
    if "\x1b" not in text and "\x9b" not in text:
        return text
    return ESCAPES_RE.sub("", text)


def decode(data: bytes) -> str:
    """Bytes -> str: invalid UTF-8 replaced, NUL removed."""
    text = data.decode("utf-8", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def clean(data: bytes) -> str:
    """A raw line as visible text: decoded, escapes removed, trailing whitespace dropped."""
    return strip_escapes(decode(data)).rstrip()


NUL_REMOVED = "NUL characters removed"
INVALID_UTF8 = "invalid UTF-8 replaced with U+FFFD"


def clean_noted(data: bytes) -> tuple[str, list[str] | None]:
    """:func:`clean`, and what decoding changed (for ``Properties.hal.problems``).

    As cheap as :func:`clean` for ordinary lines: the NUL test is the one
    ``decode`` makes anyway, and looking for U+FFFD in a text that is all ASCII
    or Latin-1 is answered without a scan; only a line holding U+FFFD is
    decoded again, strictly, to tell a replacement from a real U+FFFD.
    """
    text = data.decode("utf-8", "replace")
    problems: list[str] | None = None
    if "\x00" in text:
        text = text.replace("\x00", "")
        problems = [NUL_REMOVED]
    if "\ufffd" in text:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            problems = [INVALID_UTF8, *(problems or ())]
    return strip_escapes(text).rstrip(), problems


def final_state(text: str) -> str:
    """The last visible state of a ``\\r``-rewritten line (for text not framed by us).

    Docker's json-file driver stores the bytes of a line as one string, so its
    progress bars still contain the carriage returns the framer would have handled.
    """
    if "\r" not in text:
        return text
    if text.endswith("\r\n"):
        text = text[:-2] + "\n"
    states = text.split("\r")
    for state in reversed(states):
        if strip_escapes(state).strip():
            return state
    return states[-1]
