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
* with ``basic=True``, what a Basic-plan table refuses: more than one table,
  ``join``, ``union`` (beyond lookups), ``find``, ``search``, ``externaldata``,
  cross-resource functions.
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


def check_kql(query: str, *, basic: bool = False) -> list[str]:
    """Problems found in ``query`` (empty when it passes)."""
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
    if basic:
        for op in operators:
            if op in BASIC_REFUSED:
                problems.append(f"{op} is not allowed on a Basic-plan table")
        if len(tables) > 1:
            problems.append(f"more than one table on Basic: {sorted(tables)}")
    return problems
