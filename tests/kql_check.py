"""A KQL check without a Kusto engine: what can be told from the text, told strictly.

There is no Log Analytics to run queries against here, so each query of the
cookbook (docs/queries.md) and of the workbook passes this check instead:

* brackets balance and string literals close;
* it starts from a known table (or a ``let``);
* every operator after a ``|`` is a known tabular operator;
* every function called is a known KQL function;
* every other name is a column of the table (from :mod:`hal_logging.schema`), a
  standard column, a name the query itself defines (``Name =``, ``let Name``), a
  keyword, or a key inside a dynamic value (after a ``.``): a column renamed in
  the schema, or misspelt in a query, fails here;
* with ``basic=True``, what a Basic-plan table refuses: more than one table
  (or the same table read twice, as in a ``toscalar`` subquery),
  ``join``, ``union`` (beyond lookups), ``find``, ``search``, ``externaldata``,
  cross-resource functions; with ``auxiliary=True`` also a ``Properties.key``
  read (Properties is a string there: ``parse_json(Properties)``);
* :func:`check_transform`: a DCR transformation against the operators and
  functions Azure allows there, and its output against the table's types.
"""

from __future__ import annotations

import re

from hal_logging import schema

TABLES = {schema.TABLE_NAME, "Usage"}
#: Columns of the other table the cookbook reads (the workspace's own accounting).
OTHER_COLUMNS = {"DataType", "IsBillable", "Quantity"}
STANDARD_COLUMNS = {"_BilledSize", "_ResourceId", "_IsBillable", "Type", "TenantId"}
OPERATORS = {
    "where", "extend", "project", "project-away", "project-rename", "project-keep",
    "summarize", "order", "sort", "take", "limit", "top", "count", "distinct", "render",
    "parse", "mv-expand", "make-series", "join", "union", "lookup", "as", "sample",
    "search", "find", "externaldata", "serialize", "getschema", "evaluate",
}  # fmt: skip
FUNCTIONS = {
    "ago", "now", "bin", "bin_auto", "count", "countif", "dcount", "dcountif", "sum", "sumif",
    "min", "max", "minif", "maxif", "avg", "avgif", "any", "take_any", "take_anyif",
    "arg_max", "arg_min", "make_set", "make_list", "make_set_if", "make_list_if",
    "tostring", "toint", "tolong", "todouble", "toreal", "todatetime", "tobool", "todynamic",
    "iff", "iif", "case", "coalesce", "isempty", "isnotempty", "isnull", "isnotnull", "not",
    "strcat", "round", "format_datetime", "estimate_data_size", "toscalar", "new_guid",
    "datetime", "int", "long", "real", "double", "string", "bool", "dynamic", "timespan",
    "columnifexists", "strlen", "substring", "split", "percentile", "pack", "bag_pack",
    "parse_json",
}  # fmt: skip
KEYWORDS = {
    "by", "asc", "desc", "and", "or", "in", "has", "contains", "startswith", "endswith",
    "true", "false", "null", "let", "on", "kind", "with", "nulls", "first", "last",
    "timechart", "barchart", "piechart", "columnchart", "table", "between",
}  # fmt: skip
BASIC_REFUSED = {"join", "union", "find", "search", "externaldata"}
CROSS_RESOURCE = {"workspace", "app", "resource", "cluster", "database"}

_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_PARAM = re.compile(r"\{[A-Za-z][A-Za-z0-9]*(?::[A-Za-z]+)?\}")
_WORD = re.compile(r"(?<![\w.-])[A-Za-z_][A-Za-z0-9_]*(?:-[a-z]+)*")


def check_kql(query: str, *, basic: bool = False, auxiliary: bool = False) -> list[str]:
    """Problems found in ``query`` (empty when it passes).

    ``auxiliary=True`` adds Basic's limits and the Auxiliary table's shape:
    Properties is a string there, so a query reads it through
    ``parse_json(Properties)`` and never as ``Properties.key``.
    """
    basic = basic or auxiliary
    problems: list[str] = []
    text = _PARAM.sub("'P'", query)
    text = _STRING.sub('""', text)
    if '"' in text.replace('""', "") or "'" in text:
        problems.append("a string literal does not close")
    text = re.sub(r'""', " S ", text)
    text = re.sub(r"//[^\n]*", "", text)
    for o, c in ("()", "[]", "{}"):
        if text.count(o) != text.count(c):
            problems.append(f"unbalanced {o}{c}")
    head = text.strip().split(None, 1)[0] if text.strip() else ""
    if head not in TABLES and head != "let":
        problems.append(f"does not start from a known table: {head!r}")
    defined = set(re.findall(r"\b([A-Za-z_]\w*)\s*=(?!=)", text))
    defined |= set(re.findall(r"\blet\s+([A-Za-z_]\w*)", text))
    defined |= {
        n
        for group in re.findall(r"\(([\w\s,]+)\)\s*=(?!=)", text)
        for n in re.findall(r"\w+", group)
    }
    operators = re.findall(r"\|\s*([a-z][a-z-]*)", text)
    for op in operators:
        if op not in OPERATORS:
            problems.append(f"unknown operator {op!r}")
    # arg_max/arg_min return the columns they name: those become defined too.
    for args in re.findall(r"\barg_m(?:ax|in)\(([^()]*)\)", text):
        defined |= {a.strip() for a in args.split(",") if re.fullmatch(r"\s*\w+\s*", a)}
    tables = set()
    for m in _WORD.finditer(text):
        word, end = m.group(0), m.end()
        if word in KEYWORDS:
            continue
        if text[end:].lstrip().startswith("("):
            if word in CROSS_RESOURCE:
                if basic:
                    problems.append(f"cross-resource {word}() is not allowed on Basic")
                continue
            if word not in FUNCTIONS and word not in OPERATORS:
                problems.append(f"unknown function {word}()")
            continue
        if word in TABLES:
            tables.add(word)
            continue
        if word in OPERATORS or word in KEYWORDS or word in defined:
            continue
        if word in schema.COLUMN_SET or word in STANDARD_COLUMNS or word in OTHER_COLUMNS:
            continue
        if word in {"S", "P"}:  # placeholders for strings and parameters above
            continue
        problems.append(f"unknown name {word!r} (not a column of {schema.TABLE_NAME})")
    if auxiliary and re.search(r"\bProperties\s*[.\[]", text):
        problems.append(
            "Properties is a string on an Auxiliary table: read it with parse_json(Properties)"
        )
    if basic:
        uses = sum(len(re.findall(rf"(?<![\w.]){t}\b", text)) for t in TABLES)
        if uses > 1:
            problems.append(
                "the table is read twice (a subquery): one table read per query on Basic"
            )
        for op in operators:
            if op in BASIC_REFUSED:
                problems.append(f"{op} is not allowed on a Basic-plan table")
        if len(tables) > 1:
            problems.append(f"more than one table on Basic: {sorted(tables)}")
    return problems


# ---------------------------------------------------------------------------
# DCR transformations (transformKql)
# ---------------------------------------------------------------------------

#: What a transformation may use (Azure Monitor's list for ``transformKql``): it runs
#: on each record alone, so nothing that reads several rows (``summarize``, ``join``,
#: ``take``, ``order``...) is allowed.
TRANSFORM_OPERATORS = {"extend", "project", "where", "parse", "project-away", "project-rename"}
TRANSFORM_FUNCTIONS = {
    "tobool", "todatetime", "todouble", "toreal", "toguid", "toint", "tolong", "tostring",
    "totimespan", "ago", "now", "datetime_add", "datetime_diff", "startofday", "bin", "floor",
    "array_concat", "array_length", "pack_array", "pack", "parse_json", "parse_xml", "zip",
    "round", "abs", "case", "iif", "iff", "max_of", "min_of", "countof", "extract",
    "extract_all", "indexof", "isempty", "isnotempty", "replace", "split", "strcat",
    "strcat_delim", "strlen", "substring", "tolower", "toupper", "hash_sha256", "gettype",
    "isnotnull", "isnull", "columnifexists", "datetime", "dynamic", "int", "long", "real",
    "bool", "string", "timespan",
}  # fmt: skip
#: The type a conversion function gives, for the check of the output's columns.
CONVERSIONS = {
    "tostring": "string", "todatetime": "datetime", "toint": "int", "tolong": "long",
    "todouble": "real", "toreal": "real", "tobool": "boolean", "parse_json": "dynamic",
    "todynamic": "dynamic", "toguid": "guid", "totimespan": "timespan", "strcat": "string",
}  # fmt: skip


def _top_level_split(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def check_transform(query: str, stream: dict[str, str], table: dict[str, str]) -> list[str]:
    """Problems of a DCR ``transformKql``: operators, functions, names, and output types.

    ``stream`` and ``table`` map column names to types (the rule's stream
    declaration and the destination table). The output's columns are tracked
    through ``extend``/``project``/``project-away``/``project-rename`` and must
    each exist in the table with the table's type: a transformation whose
    output does not match the table is refused when the rule is saved.
    """
    problems: list[str] = []
    text = _STRING.sub('""', query)
    text = re.sub(r"//[^\n]*", "", text)
    for o, c in ("()", "[]", "{}"):
        if text.count(o) != text.count(c):
            problems.append(f"unbalanced {o}{c}")
    segments = [s.strip() for s in _top_level_split(text, "|")]
    if segments[0] != "source":
        problems.append(f"a transformation starts from 'source', not {segments[0]!r}")
    cols = dict(stream)
    for seg in segments[1:]:
        op, _, rest = seg.partition(" ")
        if op not in TRANSFORM_OPERATORS:
            problems.append(f"{op!r} is not allowed in a transformation")
            continue
        for m in _WORD.finditer(rest):
            word, end = m.group(0), m.end()
            if rest[end:].lstrip().startswith("("):
                if word not in TRANSFORM_FUNCTIONS:
                    problems.append(f"function {word}() is not allowed in a transformation")
            elif (
                word not in cols
                and word not in KEYWORDS
                and word != "S"
                and not (
                    op in ("extend", "project", "project-rename", "parse")
                    and re.match(r"\s*=(?!=)", rest[end:])
                )
            ):
                problems.append(f"unknown name {word!r} (not a column of the stream)")
        items = [i.strip() for i in _top_level_split(rest, ",") if i.strip()]
        if op in ("extend", "project"):
            new = dict(cols) if op == "extend" else {}
            for item in items:
                name, eq, expr = item.partition("=")
                name, expr = name.strip(), expr.strip()
                if not eq:  # project Name
                    new[name] = cols.get(name, "unknown")
                    continue
                call = re.fullmatch(r"(\w+)\((.*)\)", expr, re.S)
                if call and call.group(1) in CONVERSIONS:
                    new[name] = CONVERSIONS[call.group(1)]
                else:
                    new[name] = cols.get(expr, "unknown")
            cols = new
        elif op == "project-away":
            for item in items:
                cols.pop(item, None)
        elif op == "project-rename":
            for item in items:
                name, _, old = (x.strip() for x in item.partition("="))
                cols[name] = cols.pop(old, "unknown")
    if "TimeGenerated" not in cols:
        problems.append("the output has no TimeGenerated")
    for name, typ in cols.items():
        if name not in table:
            problems.append(f"output column {name!r} is not in the table (dropped, still billed)")
        elif typ != table[name]:
            problems.append(f"output column {name!r} is {typ}, the table's is {table[name]}")
    return problems
