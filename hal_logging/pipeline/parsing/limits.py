"""The 64 KB field limit (docs/facts.md §1), applied before Azure applies it silently.

The service cuts any field value over 64 KB without saying so; for the dynamic
``Properties`` column that would leave broken JSON. So every string column and
every string inside Properties is cut here, with a visible marker
(:data:`hal_logging.schema.TRUNCATION_MARKER`), and the original UTF-8 length is
kept under ``Properties.hal.original_length`` keyed by the field's path
(``Message``, ``Properties.exception.stacktrace``...). If Properties as a whole
still serialises to more than the limit (many medium strings, huge arrays),
its largest strings are cut further, and as a last resort the user part is
replaced by its serialised text, cut (``Properties.truncated``).

Checks are skipped when the caller knows the input was small: a row built from
a line of n bytes cannot serialise much larger than 3n (numbers like ``1e5``
are the worst case), which is the common, fast case.
"""

from __future__ import annotations

from typing import Any

from hal_logging import _json, schema
from hal_logging.schema import MAX_FIELD_BYTES, truncate_utf8

#: Room kept for Properties.hal (record id, claims...) when fitting Properties.
HAL_ROOM = 4096
_MIN_CUT = 256


def cut_columns(row: dict[str, Any], hal: dict[str, Any]) -> None:
    """Cut every string column to the limit, noting original lengths."""
    for col in schema.STRING_COLUMNS:
        value = row[col]
        if len(value) * 4 > MAX_FIELD_BYTES:
            cut, original = truncate_utf8(value)
            if original is not None:
                row[col] = cut
                hal.setdefault(schema.HAL_ORIGINAL_LENGTH, {})[col] = original


def _cut_strings(obj: Any, path: str, lengths: dict[str, int], depth: int = 0) -> Any:
    if isinstance(obj, str):
        if len(obj) * 4 > MAX_FIELD_BYTES:
            cut, original = truncate_utf8(obj)
            if original is not None:
                lengths[path] = original
                return cut
        return obj
    if depth > _json.MAX_DEPTH:
        return obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            new = _cut_strings(v, f"{path}.{k}", lengths, depth + 1)
            if new is not v:
                obj[k] = new
        return obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            new = _cut_strings(v, f"{path}[{i}]", lengths, depth + 1)
            if new is not v:
                obj[i] = new
        return obj
    return obj


def _strings(obj: Any, path: str, out: list[tuple[int, str, Any, Any]], depth: int = 0) -> None:
    """Collect (size, path, container, key) for every string leaf."""
    if depth > _json.MAX_DEPTH:
        return
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        if isinstance(v, str):
            out.append((len(v.encode("utf-8", "surrogatepass")), f"{path}.{k}", obj, k))
        elif isinstance(v, (dict, list)):
            _strings(v, f"{path}.{k}", out, depth + 1)


def fit_properties(props: dict[str, Any], hal: dict[str, Any]) -> dict[str, Any]:
    """Make ``props`` (Properties without ``hal``) fit the field limit; returns it.

    ``hal`` receives ``original_length`` entries for what was cut.
    """
    lengths: dict[str, int] = {}
    _cut_strings(props, "Properties", lengths)
    budget = MAX_FIELD_BYTES - HAL_ROOM
    size = len(_json.dumps(props))
    if size > budget:
        leaves: list[tuple[int, str, Any, Any]] = []
        _strings(props, "Properties", leaves)
        leaves.sort(key=lambda t: t[0], reverse=True)
        for leaf_size, path, container, key in leaves:
            if size <= budget or leaf_size <= _MIN_CUT:
                break
            target = max(_MIN_CUT, leaf_size - (size - budget))
            cut, original = truncate_utf8(container[key], target)
            if original is None:
                continue
            container[key] = cut
            lengths.setdefault(path, original)
            size = len(_json.dumps(props))
        if size > budget:
            text = _json.dumps_str(props)
            lengths["Properties"] = len(text.encode("utf-8"))
            target = budget - 64
            while True:  # escaping (quotes, control characters) makes the dump longer
                cut, _ = truncate_utf8(text, target)
                over = len(_json.dumps(cut)) - (budget - 64)
                if over <= 0:
                    break
                target -= over
            props = {"truncated": cut}
    if lengths:
        hal.setdefault(schema.HAL_ORIGINAL_LENGTH, {}).update(lengths)
    return props


#: Cap for one container claim kept in Properties.hal (a claim is a context value).
CLAIM_BYTES = 512


def fit_meta(meta: dict[str, Any]) -> None:
    """Keep Properties.hal within :data:`HAL_ROOM`: big claims and notes are cut.

    Only the container can make hal big (a huge claimed RunID, a forged ``hal``
    object, thousands of unknown keys): those are cut to :data:`CLAIM_BYTES`.
    """
    if len(_json.dumps(meta)) <= HAL_ROOM:
        return
    claimed = meta.get(schema.HAL_CLAIMED)
    if isinstance(claimed, dict):
        for key, value in claimed.items():
            text = value if isinstance(value, str) else _json.dumps_str(value)
            if len(text.encode("utf-8", "surrogatepass")) > CLAIM_BYTES:
                claimed[key] = truncate_utf8(text, CLAIM_BYTES)[0]
    for key in ("original_time", "original_level", "wire_version"):
        value = meta.get(key)
        if value is not None:
            text = value if isinstance(value, str) else _json.dumps_str(value)
            meta[key] = truncate_utf8(text, CLAIM_BYTES)[0]
    problems = meta.get("problems")
    if isinstance(problems, list):
        meta["problems"] = [truncate_utf8(p, 200)[0] for p in problems[:10]]
        if len(problems) > 10:
            meta["problems"].append(f"... and {len(problems) - 10} more")
