"""Run context: which run, task, benchmark, agent and VM a row belongs to.

Read from the environment (docs/contract.md §3) on both sides. Inside the container
these are what the harness passed with ``-e``; on the VM the forwarder's flags
and environment are the *trusted* values (the container runs an AI agent and
may claim anything).

Also home of :func:`bind`/:func:`unbind`: fields added to every record logged
in the current thread or asyncio task (a :class:`contextvars.ContextVar`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from hal_logging.schema import CONTEXT_COLUMNS, LOG_TYPE_AGENT


def context_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Context columns found in the environment, only those set and non-empty."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for col in CONTEXT_COLUMNS:
        assert col.env is not None
        value = env.get(col.env, "")
        if value:
            out[col.name] = value
    return out


def full_context(
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    default_log_type: str = LOG_TYPE_AGENT,
) -> dict[str, str]:
    """Every context column: overrides (non-None) over the environment, '' when unknown."""
    ctx = {col.name: "" for col in CONTEXT_COLUMNS}
    ctx["LogType"] = default_log_type
    ctx.update(context_from_env(environ))
    if overrides:
        ctx.update({k: v for k, v in overrides.items() if v is not None})
    return ctx


# ---------------------------------------------------------------------------
# Names: a context column can be named three ways.
# ---------------------------------------------------------------------------


def _snake(env_name: str) -> str:
    name = env_name.lower()
    return name[4:] if name.startswith("hal_") else name


#: Every accepted spelling of a context column -> the column name. A column can be
#: named as in the table (``RunID``), in snake_case (``run_id``) or by its
#: environment variable (``HAL_RUN_ID``, the spelling the seed's entrypoint used
#: in ``extra=``). One table, used by ``configure(**overrides)``, by ``bind()``
#: and ``extra=`` fields, and by ``get_context_logger(required_fields=...)``.
CONTEXT_ALIASES: dict[str, str] = {}
for _col in CONTEXT_COLUMNS:
    assert _col.env is not None
    CONTEXT_ALIASES[_col.name] = _col.name
    CONTEXT_ALIASES[_snake(_col.env)] = _col.name
    CONTEXT_ALIASES[_col.env] = _col.name
del _col


def context_column(name: str) -> str | None:
    """The context column ``name`` designates (any spelling), else ``None``."""
    return CONTEXT_ALIASES.get(name)


def normalize_context(fields: Mapping[str, object], *, strict: bool = True) -> dict[str, str]:
    """Context given under any spelling -> {column: str value}; ``None`` values are skipped.

    With ``strict``, a name that is no context column raises ``TypeError`` listing
    the accepted ones (a typo such as ``run_idd`` must not pass silently).
    """
    out: dict[str, str] = {}
    unknown = []
    for key, value in fields.items():
        column = CONTEXT_ALIASES.get(key)
        if column is None:
            unknown.append(key)
            continue
        if value is not None:
            out[column] = value if isinstance(value, str) else str(value)
    if unknown and strict:
        accepted = ", ".join(sorted({_snake(c.env or c.name) for c in CONTEXT_COLUMNS}))
        raise TypeError(
            f"unknown context field(s) {', '.join(map(repr, unknown))}: context columns are "
            f"{accepted} (or their column names such as RunID, or env names such as "
            "HAL_RUN_ID); for any other field use hal_logging.bind(...) or extra={...}"
        )
    return out


# ---------------------------------------------------------------------------
# Bound fields: bind()/unbind(), per thread and per asyncio task.
# ---------------------------------------------------------------------------

#: The fields bound in the current context. The dict is never mutated, only
#: replaced, so a record or a task that captured it keeps a consistent view.
#: A ContextVar (not a thread-local) because asyncio tasks each copy the
#: context when created: a bind() inside one task never leaks into another,
#: and a new thread starts with nothing bound.
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BOUND: ContextVar[Mapping[str, Any]] = ContextVar("hal_logging_bound", default=_EMPTY)


def bound_fields() -> Mapping[str, Any]:
    """The fields bound in the current thread / asyncio task (read-only)."""
    return _BOUND.get()


class Binding:
    """What :func:`bind` returns: the fields are already bound; leaving the
    ``with`` block restores what was bound before it.

    Used without ``with``, the fields stay bound in the current context until
    :func:`unbind` removes them.
    """

    __slots__ = ("_previous", "_token", "fields")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)
        self._previous = _BOUND.get()
        self._token: Token[Mapping[str, Any]] | None = _BOUND.set({**self._previous, **self.fields})

    def __enter__(self) -> Binding:
        return self

    def __exit__(self, *exc: object) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            _BOUND.reset(token)
        except (ValueError, RuntimeError):
            # Exited in another context (e.g. a generator resumed elsewhere):
            # restore the fields we saw, which is what the caller meant.
            _BOUND.set(self._previous)


def bind(**fields: Any) -> Binding:
    """Add ``fields`` to every record logged in the current thread / asyncio task.

    ``with hal_logging.bind(step=3): ...`` scopes them to the block; a bare
    ``hal_logging.bind(step=3)`` keeps them until ``unbind("step")``. Fields
    named like a context column (``task_id``, ``TaskID``, ``HAL_TASK_ID``) set
    that column instead of a Properties key (the VM side still replaces it with
    its trusted value where it knows one).
    """
    return Binding(fields)


def unbind(*names: str) -> None:
    """Remove the named fields from the current context (missing names are ignored)."""
    current = _BOUND.get()
    if any(n in current for n in names):
        _BOUND.set({k: v for k, v in current.items() if k not in names})
