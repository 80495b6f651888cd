"""JSON in and out, fast on the common path and never raising on the odd one.

orjson does the work (measured: several times faster than the stdlib ``json``
for our row shape; see benchmarks/formatter.py). It writes strict JSON: NaN and
infinities become ``null``, which the stdlib would write as bare ``NaN``.

When orjson refuses a value (a circular reference, a tuple key, an int beyond
64 bits, an object whose ``__repr__`` raises) :func:`sanitize` rebuilds it into
plain JSON types with readable stand-ins, and the dump is tried again. So a
log call never loses its record to an encoding error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any

import orjson
from pythonjsonlogger.defaults import unknown_default

_OPTS = orjson.OPT_NON_STR_KEYS
MAX_DEPTH = 64
JSONDecodeError = orjson.JSONDecodeError
loads = orjson.loads


_EMPTY_JOIN = b"".join
_NOTHING = repeat(b"")


def exact_copies(datas: Iterable[bytes]) -> Iterator[bytes]:
    """Each of ``datas`` (orjson's results) copied to its exact size, lazily.

    orjson's result keeps the buffer it was written into (~4 to 8 KB however
    short the JSON): rows kept while a batch waits would hold ~10x their size.
    ``b"".join((data, b""))`` makes the exact-size copy in one C call (measured
    on 500-byte rows: ~470 ns a row with the dump, against ~750 for
    ``bytes(memoryview(data))``, the same memory).
    """
    return map(_EMPTY_JOIN, zip(datas, _NOTHING, strict=False))


def exact_copy(data: bytes) -> bytes:
    """One of :func:`exact_copies`."""
    return _EMPTY_JOIN((data, b""))


def _default(obj: Any) -> Any:
    """Types orjson does not know: sets, bytes, Decimal, exceptions, anything."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {safe_str(obj)}"
    return safe_str(obj)


def safe_str(obj: Any) -> str:
    """``str(obj)``, else ``repr(obj)``, else a placeholder naming the type."""
    text = unknown_default(obj)
    if text == "__could_not_encode__":
        return f"<unprintable {type(obj).__name__}>"
    return text


def dumps(obj: Any) -> bytes:
    """Serialise to compact strict JSON bytes; never raises."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(sanitize(obj), option=_OPTS)


def dumps_str(obj: Any) -> str:
    return dumps(obj).decode("utf-8")


def _clean_str(text: str) -> str:
    """``text`` encodable as UTF-8: paired surrogates joined, lone ones replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def sanitize(obj: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """A copy of ``obj`` made only of JSON types: str keys, finite floats, no cycles."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return _clean_str(obj)
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if _depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH}>"
    if isinstance(obj, (Mapping, list, tuple, set, frozenset)):
        if id(obj) in _seen:
            return "<circular reference>"
        seen = _seen | {id(obj)}
        if isinstance(obj, Mapping):
            return {
                _clean_str(k if isinstance(k, str) else safe_str(k)): sanitize(v, _depth + 1, seen)
                for k, v in list(obj.items())
            }
        return [sanitize(v, _depth + 1, seen) for v in obj]
    try:
        converted = orjson.loads(orjson.dumps(obj, default=_default, option=_OPTS))
    except Exception:
        return _default(obj)
    return converted
