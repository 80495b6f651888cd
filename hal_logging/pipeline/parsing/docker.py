"""Docker's log formats: the json-file driver and ``docker logs --timestamps``.

* **json-file** (``/var/lib/docker/containers/<id>/<id>-json.log``): one JSON object per
  line, ``{"log": "...\\n", "stream": "stdout", "time": "RFC3339Nano"}``. Lines over
  16 KB are split into pieces whose ``log`` has no trailing ``\\n``; the pieces are
  rejoined (bounded: a head is kept, the rest counted) and the row gets the
  stream and time of the record, not the parser's stream. The text inside is then
  parsed like any line (wire, JSON, text, traceback), with its ``\\r`` rewrites
  resolved (the framer never saw them as line breaks).
* **--timestamps**: each line starts with ``2024-05-01T12:00:00.123456789Z`` and a
  space; the prefix is removed and becomes the time when the line has none.

``input_format="auto"`` recognises both per line: ``{"log":`` at the start of a
line that decodes to such an object, or docker's exact timestamp shape (9-digit
fraction, ``Z``, space). A line that does not fit is parsed as raw text, so a
wrong guess never loses a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from hal_logging import _json
from hal_logging.pipeline.parsing.timestamps import ISO_RE, canonical, from_match, parse_time

JSON_PREFIX: Final = b'{"log":'
_DOCKER_TS_RE: Final = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
_ANY_TS_RE: Final = re.compile(ISO_RE.pattern.encode() + rb" ")


@dataclass(slots=True)
class DockerRecord:
    log: str
    stream: str
    time: str | None


def parse_json_line(data: bytes) -> DockerRecord | None:
    """The json-file record on this line, or None when it is not one."""
    try:
        obj = _json.loads(data)
    except _json.JSONDecodeError:
        try:
            obj = _json.loads(data.decode("utf-8", "replace"))
        except _json.JSONDecodeError:
            return None
    if type(obj) is not dict:
        return None
    log = obj.get("log")
    if type(log) is not str:
        return None
    stream = obj.get("stream")
    if stream not in ("stdout", "stderr"):
        stream = "unknown"
    return DockerRecord(log, stream, docker_time(obj.get("time")))


def docker_time(value: object) -> str | None:
    """:func:`parse_time` for the daemon's own times (UTC, ``Z``, up to nine fraction
    digits), cut to microseconds by slicing instead of a datetime round trip: the
    time of every json-file line is parsed, and that was a third of the cost of
    shipping a json-file log of wire lines. Anything else goes to parse_time."""
    if type(value) is str and len(value) >= 20 and value[-1] == "Z" and value[19] in ".Z":
        frac = value[20:-1]
        if len(frac) <= 9 and (not frac or (frac.isdigit() and frac.isascii())):
            candidate = f"{value[:19]}.{frac[:6].ljust(6, '0')}Z"
            if canonical(candidate):  # also checks the date and time of day
                return candidate
    return parse_time(value)


def split_timestamp(data: bytes, strict: bool) -> tuple[str, bytes] | None:
    """(time, rest) for a ``--timestamps`` line; ``strict`` demands docker's exact shape."""
    if len(data) < 20 or data[4] != 0x2D or data[10] != 0x54:  # '-' and 'T'
        return None
    if strict:
        if not _DOCKER_TS_RE.match(data):
            return None
        m = ISO_RE.match(data[:30].decode("ascii"))
        when = from_match(m) if m else None
        return (when, data[31:]) if when else None
    bm = _ANY_TS_RE.match(data)
    if not bm:
        return None
    m = ISO_RE.match(bm.group(0)[:-1].decode("ascii"))
    when = from_match(m) if m else None
    return (when, data[bm.end() :]) if when else None


@dataclass(slots=True)
class Partial:
    """Pieces of one split json-file line, kept bounded."""

    start: int
    end: int
    received: float
    time: str | None
    cap: int
    pieces: list[str] = field(default_factory=list)
    kept: int = 0  # characters kept
    length: int = 0  # characters seen

    def add(self, text: str) -> None:
        self.length += len(text)
        room = self.cap - self.kept
        if room > 0:
            piece = text[:room]
            self.pieces.append(piece)
            self.kept += len(piece)

    def text(self) -> str:
        return "".join(self.pieces)
