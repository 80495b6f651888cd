"""Wire lines (docs/contract.md §2): a row written by ``configure()``, checked and repaired.

A wire line starts with :data:`hal_logging.schema.WIRE_PREFIX` and is one JSON
object with the row's columns. The fast path is one ``orjson.loads`` and a type
check per column. A line that does not keep the promise still becomes a row:

* a column of the wrong type is converted to text (``Properties`` that is not an
  object is kept as ``Properties.value``), and the problem is listed in
  ``Properties.hal.problems``;
* a Level outside LEVELS is mapped (``warn`` -> WARNING, unknown -> INFO) with
  the original in ``Properties.hal.original_level``;
* TimeGenerated in another shape is normalised; if it is not a time at all the
  line's read time is used and the original kept in ``Properties.hal.original_time``;
* keys that are not columns are moved into Properties (never dropped);
* missing columns are filled (empty strings);
* the Message loses NUL characters and terminal escape sequences, like text lines.
"""

from __future__ import annotations

from typing import Any, Final

from hal_logging import _json, schema
from hal_logging.pipeline.parsing.levels import LEVEL_SET, normalize_level
from hal_logging.pipeline.parsing.terminal import strip_escapes
from hal_logging.pipeline.parsing.timestamps import canonical, parse_time

_OTHER_STRING_COLUMNS: Final = tuple(
    c for c in schema.STRING_COLUMNS if c not in ("Level", "Message")
)
_KNOWN: Final = schema.COLUMN_SET | {schema.WIRE_VERSION_KEY}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _json.dumps_str(value)
    return str(value)


_WIRE_KEYS: Final = (schema.WIRE_VERSION_KEY, *schema.COLUMN_NAMES)
_STR_ONLY: Final = {str}


def row_from_wire(obj: dict[str, Any], received: str, hal: dict[str, Any]) -> dict[str, Any]:
    """The row a wire object describes; notes go into ``hal`` (Properties.hal).

    The fast path reuses ``obj`` itself when it is exactly what ``configure()``
    writes: the columns in table order, all strings but an object Properties, a
    valid Level and a canonical time. Anything else takes the careful path.
    """
    if tuple(obj) == _WIRE_KEYS and obj[schema.WIRE_VERSION_KEY] == schema.WIRE_VERSION:
        props = obj.pop("Properties")
        version = obj.pop(schema.WIRE_VERSION_KEY)
        if (
            type(props) is dict
            and set(map(type, obj.values())) == _STR_ONLY
            and obj["Level"] in LEVEL_SET
            and canonical(obj["TimeGenerated"])
            and "\x00" not in obj["Message"]
            and "\x1b" not in obj["Message"]
            and "\x9b" not in obj["Message"]  # 8-bit CSI: an escape too
        ):
            obj["Properties"] = props
            return obj
        obj["Properties"] = props
        obj[schema.WIRE_VERSION_KEY] = version
    return _careful(obj, received, hal)


def _careful(obj: dict[str, Any], received: str, hal: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] | None = None
    row: dict[str, Any] = {}

    tg = obj.get("TimeGenerated")
    if type(tg) is str and canonical(tg):
        row["TimeGenerated"] = tg
    else:
        norm = parse_time(tg)
        if norm is None:
            norm = received
            if tg is not None and tg != "":  # missing is not a problem, garbage is
                hal[schema.HAL_ORIGINAL_TIME] = tg if isinstance(tg, str) else _text(tg)
                problems = ["TimeGenerated is not a time"]
        row["TimeGenerated"] = norm

    level = obj.get("Level")
    if type(level) is str and level in LEVEL_SET:
        row["Level"] = level
    else:
        row["Level"], _ = normalize_level(level)
        hal["original_level"] = level if isinstance(level, (str, int, float)) else _text(level)

    msg = obj.get("Message", "")
    if type(msg) is not str:
        problems = problems or []
        problems.append(f"Message is {type(msg).__name__}, not a string")
        msg = _text(msg)
    if "\x00" in msg:
        msg = msg.replace("\x00", "")
        problems = problems or []
        problems.append("NUL characters removed from Message")
    row["Message"] = strip_escapes(msg)  # a coloured message reads as plain text

    for col in _OTHER_STRING_COLUMNS:
        value = obj.get(col, "")
        if type(value) is not str:
            problems = problems or []
            problems.append(f"{col} is {type(value).__name__}, not a string")
            value = _text(value)
        row[col] = value

    props = obj.get("Properties")
    if type(props) is not dict:
        if props is None:
            props = {}
        else:
            problems = problems or []
            problems.append(f"Properties is {type(props).__name__}, not an object")
            props = {"value": props}
    row["Properties"] = props

    version = obj.get(schema.WIRE_VERSION_KEY)
    if version != schema.WIRE_VERSION:
        hal["wire_version"] = version if isinstance(version, (int, str)) else _text(version)

    if not obj.keys() <= _KNOWN:
        for key, value in obj.items():
            if key not in _KNOWN:
                problems = problems or []
                problems.append(f"unknown key {key!r} moved into Properties")
                props.setdefault(key, value)
    if problems:
        hal.setdefault("problems", []).extend(problems)
    return row
