"""Make any row acceptable to the service before it is packed: no record is too large.

The parser already cuts Message to 64 KB, but a row can still be too big for
one request: Properties is one field too (a dynamic column the service would
cut mid-JSON past 64 KB), and JSON escaping can make a 64 KB value six times
longer on the wire. So, as a last line of defence and only for the rare row
whose serialised form exceeds 64 KB:

1. each string column is cut to 64 KB of UTF-8 (``schema.truncate_utf8``);
2. Properties is made to serialise within 64 KB: small keys are kept whole,
   the largest values are cut (strings) or turned into cut JSON text, and what
   could not be kept at all is named; ``hal`` is always kept;
3. if escaping still makes the row too long for a request, the longest
   columns are halved until it fits.

Every cut is recorded in ``Properties.hal.original_length`` as
``{"Message": 81234, "Properties.payload": 200000, ...}`` (bytes before the cut).
"""

from __future__ import annotations

from typing import Any, Final

from hal_logging import _json, schema

#: Room for ``[`` and ``]`` and for gzip's worst-case framing on incompressible data.
REQUEST_OVERHEAD: Final = 4096


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _note(hal: dict[str, Any], key: str, length: int) -> None:
    original = hal.get(schema.HAL_ORIGINAL_LENGTH)
    if not isinstance(original, dict):
        original = {}
    original = dict(original)
    original.setdefault(key, length)
    hal[schema.HAL_ORIGINAL_LENGTH] = original


def _hal_of(props: dict[str, Any]) -> dict[str, Any]:
    hal = props.get(schema.PROP_HAL)
    return dict(hal) if isinstance(hal, dict) else {}


def _fit_properties(props: dict[str, Any], hal: dict[str, Any], budget: int) -> dict[str, Any]:
    """Properties whose JSON is at most ``budget`` bytes, ``hal`` first and whole."""
    others = [(k, v, len(_json.dumps(v))) for k, v in props.items() if k != schema.PROP_HAL]
    cut: list[tuple[str, int]] = []
    kept: dict[str, Any] = {}
    # Reserve room for the notes about what gets cut (key names + lengths).
    reserve = 64 + sum(len(_json.dumps(k)) + 24 for k, _, _ in others)
    hal_size = len(_json.dumps(hal)) + 8
    room = budget - hal_size - reserve
    for key, value, size in sorted(others, key=lambda kv: kv[2]):
        entry = len(_json.dumps(key)) + 1 + size + 1
        if entry <= room:
            kept[key] = value
            room -= entry
            continue
        key_len = len(_json.dumps(key)) + 2
        text = value if isinstance(value, str) else _json.dumps_str(value)
        # Escaping can grow a string up to 6x; cut the raw text to fit after escaping.
        allowed = (room - key_len - 64) // 6 if room > key_len + 512 else 0
        if allowed >= 128:
            short, _ = schema.truncate_utf8(
                text, max(allowed, len(schema.TRUNCATION_MARKER.encode()) + 1)
            )
            kept[key] = short
            room -= key_len + len(_json.dumps(short))
        cut.append((key, size))
    hal = dict(hal)
    for key, size in cut:
        _note(hal, f"Properties.{key}", size)
    result: dict[str, Any] = {schema.PROP_HAL: hal}
    result.update((k, kept[k]) for k in props if k in kept)
    if len(_json.dumps(result)) <= budget:
        return result
    # Pathological (huge keys or a huge hal): keep the pipeline metadata and a cut copy.
    minimal: dict[str, Any] = {
        k: hal[k]
        for k in (schema.HAL_STREAM, schema.HAL_RECORD_ID, schema.HAL_FORMAT, schema.HAL_OFFSET)
        if k in hal and len(_json.dumps(hal[k])) < 1024
    }
    _note(minimal, "Properties", len(_json.dumps(props)))
    rest = budget - len(_json.dumps({schema.PROP_HAL: minimal})) - 64
    text, _ = schema.truncate_utf8(_json.dumps_str(props), max(rest // 6, 64))
    return {schema.PROP_HAL: minimal, "truncated": text}


def fit_row(row: dict[str, Any], max_request_bytes: int) -> tuple[dict[str, Any], bytes, bool]:
    """A row that fits (a copy when changed), its serialised bytes, and whether it changed.

    The fast path is one ``len`` check: a row whose JSON is at most 64 KB has
    no field over 64 KB and fits any request.
    """
    data = _json.dumps(row)
    if len(data) <= schema.MAX_FIELD_BYTES:
        return row, data, False
    limit = schema.MAX_FIELD_BYTES
    out = dict(row)
    props = out.get("Properties")
    if not isinstance(props, dict):
        props = {} if props is None else {"value": props}
    hal = _hal_of(props)
    changed = False
    for name, value in row.items():
        if name == "Properties" or not isinstance(value, str) or len(value) * 4 <= limit:
            continue
        short, original = schema.truncate_utf8(value, limit)
        if original is not None:
            out[name] = short
            _note(hal, name, original)
            changed = True
    if len(_json.dumps(props)) > limit or changed:
        props = dict(props)
        props[schema.PROP_HAL] = hal
        if len(_json.dumps(props)) > limit:
            props = _fit_properties(props, hal, limit)
        out["Properties"] = props
        changed = True
    data = _json.dumps(out)
    row_budget = max_request_bytes - REQUEST_OVERHEAD
    while len(data) > row_budget:
        # Escaping made it too long: halve the longest string column.
        strings = [
            (len(_json.dumps(v)), k)
            for k, v in out.items()
            if isinstance(v, str) and k != "Properties"
        ]
        if not strings:
            break
        _, name = max(strings)
        value = out[name]
        if _utf8_len(value) <= 64:
            break
        short, _ = schema.truncate_utf8(value, max(_utf8_len(value) // 2, 64))
        props = dict(out["Properties"])
        hal = _hal_of(props)
        _note(hal, name, _utf8_len(str(row.get(name, value))))
        props[schema.PROP_HAL] = hal
        out["Properties"] = props
        out[name] = short
        data = _json.dumps(out)
        changed = True
    return (out if changed else row), data, changed
