"""``configure()``: one call at the top of a container entrypoint.

After it, root logging writes one wire line per record to stdout (JSON rows,
docs/contract.md §2), or readable lines for a person at a terminal; uncaught exceptions (main
thread, other threads, asyncio) and ``warnings`` become records too; and
stdout is line-buffered so ``print()`` and logging stay in order and a killed
container loses nothing already written.

Why stdout and a flush per record: the VM side reads the container's stdout.
Python block-buffers stdout when it is a pipe, so without this the tail of the
output dies with a SIGKILLed container and print() lines overtake log lines.

Environment (all optional):

=================== ==================================================================
``HAL_LOG_LEVEL``    level when ``configure(level=...)`` is not given (default INFO)
``HAL_LOG_FORMAT``   ``json``, ``console``, or ``auto`` (the default): console only
                     when stdout is a terminal *and* the process is neither in a
                     container nor given a run/task context (see below)
``HAL_RUN_ID`` ...   context columns, see :mod:`hal_logging.context`
``OTEL_EXPORTER_OTLP_ENDPOINT``  also export records over OTLP (``hal_logging.otel``)
=================== ==================================================================

Why a terminal alone does not mean "a person reads this": ``docker run -t`` (and
``-it``, common in harnesses) gives the container a pseudo-terminal whose reader
is the Docker daemon, and on the VM the forwarder. Console output there would
cost all structure (extras inside the message, a traceback split into rows,
times without a date, levels guessed). So ``auto`` picks JSON inside a
container (``/.dockerenv``, or a docker/containerd/kubepods/podman cgroup or
mount, found by reading two small files, no network) or when ``HAL_RUN_ID`` /
``HAL_TASK_ID`` (or ``run_id=`` / ``task_id=``) say a harness runs it.
``HAL_LOG_FORMAT=console`` or ``json`` overrides the choice either way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from hal_logging.context import Binding, bind, bound_fields, full_context, normalize_context, unbind
from hal_logging.formatter import BOUND_ATTR, ConsoleFormatter, JsonFormatter, StdoutHandler

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "Binding",
    "StdoutHandler",
    "bind",
    "configure",
    "get_logger",
    "in_container",
    "install_asyncio_handler",
    "reset",
    "unbind",
]

_log = logging.getLogger("hal_logging")
#: Logger name of records about uncaught exceptions.
UNCAUGHT_LOGGER = "uncaught"
_FORMATS = ("json", "console", "auto")
#: Files that exist only inside a container (docker, podman).
_CONTAINER_FILES = (".dockerenv", "run/.containerenv")
#: Small files whose text names the container runtime's cgroups or mounts.
_CONTAINER_TEXTS = ("proc/1/cgroup", "proc/self/cgroup", "proc/self/mountinfo")
_CONTAINER_WORDS = ("docker", "containerd", "kubepods", "libpod")
#: Where the container probe looks instead of "/" (for tests of the probe).
PROBE_ROOT_ENV = "HAL_LOGGING_PROBE_ROOT"


# ---------------------------------------------------------------------------
# State owned by configure(), so a second call replaces instead of adding.
# ---------------------------------------------------------------------------


class _State:
    handler: logging.Handler | None = None
    otel_handler: logging.Handler | None = None
    previous_excepthook: Callable[..., Any] | None = None
    previous_threading_hook: Callable[..., Any] | None = None
    previous_factory: Callable[..., logging.LogRecord] | None = None
    captured_warnings = False


_state = _State()


def _resolve_level(level: int | str | None) -> tuple[int, str | None]:
    """(level number, warning text if the environment's value was unusable)."""
    if level is not None:
        number = _level_number(level)
        if number is None:
            raise ValueError(
                f"configure(level={level!r}): use a level number or one of "
                "DEBUG, INFO, WARNING, ERROR, CRITICAL"
            )
        return number, None
    env = os.environ.get("HAL_LOG_LEVEL", "").strip()
    if not env:
        return logging.INFO, None
    number = _level_number(env)
    if number is None:
        return logging.INFO, (
            f"HAL_LOG_LEVEL={env!r} is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL "
            "or a number); using INFO"
        )
    return number, None


def _level_number(level: int | str) -> int | None:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        text = level.strip()
        if text.isdigit():
            return int(text)
        number = logging.getLevelName(text.upper())
        if isinstance(number, int):
            return number
    return None


def in_container(root: str | None = None) -> bool:
    """True when this process runs in a container (docker, containerd, Kubernetes, podman).

    Cheap and local: two ``stat`` calls and reading up to three small files under
    ``/proc``; no network, no subprocess. ``root`` (default ``HAL_LOGGING_PROBE_ROOT``,
    else ``/``) lets a test point the probe at a fake tree.
    """
    base = root if root is not None else (os.environ.get(PROBE_ROOT_ENV) or "/")
    for name in _CONTAINER_FILES:
        if os.path.exists(os.path.join(base, name)):
            return True
    for name in _CONTAINER_TEXTS:
        try:
            with open(os.path.join(base, name), "rb") as fh:
                text = fh.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            continue
        if any(word in text for word in _CONTAINER_WORDS):
            return True
    return False


def _person_reads(stream: TextIO | None, ctx: Mapping[str, str]) -> bool:
    """Whether ``auto`` should write the console format: a terminal, and nothing that says
    a harness or a container runtime (not a person) is reading it."""
    try:
        if stream is None or not stream.isatty():
            return False
    except Exception:
        return False
    if ctx.get("RunID") or ctx.get("TaskID"):
        return False
    return not in_container()


def _resolve_format(
    fmt: str | None, stream: TextIO | None, ctx: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    warning = None
    if fmt is None:
        env = os.environ.get("HAL_LOG_FORMAT", "").strip().lower()
        if env and env not in _FORMATS:
            warning = f"HAL_LOG_FORMAT={env!r} is not one of json, console, auto; using auto"
            env = "auto"
        fmt = env or "auto"
    elif fmt not in _FORMATS:
        raise ValueError(f"configure(format={fmt!r}): use 'json', 'console' or 'auto'")
    if fmt == "auto":
        fmt = "console" if _person_reads(stream, ctx or {}) else "json"
    return fmt, warning


def _line_buffer(stream: TextIO | None) -> None:
    """Make ``print()`` flush at each newline too (no-op for streams that cannot)."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is None:
        return
    try:
        reconfigure(line_buffering=True)
    except Exception:
        pass


def _record_factory(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Attach the bound fields at creation, so a record formatted later keeps them."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        bound = bound_fields()
        if bound:
            setattr(record, BOUND_ATTR, bound)
        return record

    factory.hal_logging = True  # type: ignore[attr-defined]
    factory.previous = previous  # type: ignore[attr-defined]
    return factory


def _is_ours(obj: object) -> bool:
    return bool(getattr(obj, "hal_logging", False))


# ---------------------------------------------------------------------------
# Uncaught exceptions.
# ---------------------------------------------------------------------------


def _src(tb: TracebackType | None) -> str | None:
    """``module:function:line`` where the exception was raised (the innermost frame)."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    module = os.path.splitext(os.path.basename(code.co_filename))[0]
    return f"{module}:{code.co_name}:{tb.tb_lineno}"


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Log an uncaught exception as one record instead of a bare traceback on stderr."""
    logger = logging.getLogger(UNCAUGHT_LOGGER)
    if not logger.isEnabledFor(logging.CRITICAL) or not logger.hasHandlers():
        sys.__excepthook__(exc_type, exc, tb)  # logging would drop it: keep Python's default
        return
    try:
        logger.critical(
            "Uncaught %s: %s",
            exc_type.__name__,
            exc,
            exc_info=(exc_type, exc, tb),
            extra={"thread_name": threading.current_thread().name, "src": _src(tb)},
        )
    except Exception:
        sys.__excepthook__(exc_type, exc, tb)
    previous = _state.previous_excepthook
    if previous is not None and previous is not sys.__excepthook__:
        previous(exc_type, exc, tb)


_excepthook.hal_logging = True  # type: ignore[attr-defined]


def _threading_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # what threading's default hook ignores too
        return
    logger = logging.getLogger(UNCAUGHT_LOGGER)
    if not logger.isEnabledFor(logging.ERROR) or not logger.hasHandlers():
        threading.__excepthook__(args)  # logging would drop it: keep Python's default
        return
    try:
        exc_info: Any = (args.exc_type, args.exc_value, args.exc_traceback)
        name = args.thread.name if args.thread is not None else "?"
        logger.error(
            "Uncaught %s in thread %s: %s",
            args.exc_type.__name__,
            name,
            args.exc_value,
            exc_info=exc_info,
            extra={"thread_name": name, "src": _src(args.exc_traceback)},
        )
    except Exception:
        threading.__excepthook__(args)
    previous = _state.previous_threading_hook
    if previous is not None and previous is not threading.__excepthook__:
        previous(args)


_threading_excepthook.hal_logging = True  # type: ignore[attr-defined]


def _asyncio_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: the context's message as Message, the rest in Properties."""
    try:
        exc = context.get("exception")
        fields = {
            k: v if isinstance(v, (str, int, float)) else repr(v)
            for k, v in context.items()
            if k not in ("message", "exception")
        }
        message = str(context.get("message") or "Unhandled exception in event loop")
        logging.getLogger("asyncio").error(
            message,
            exc_info=(type(exc), exc, exc.__traceback__)
            if isinstance(exc, BaseException)
            else None,
            extra={"asyncio": fields},
        )
    except Exception:
        loop.default_exception_handler(context)


def install_asyncio_handler(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Log this event loop's unhandled errors ("Task exception was never retrieved", ...)
    as records whose Message is the one-line summary and whose Properties hold the task.

    ``configure()`` calls it for the loop running when it is called. Without it,
    asyncio's default handler already logs such errors on the ``asyncio`` logger,
    so they reach the JSON output either way; this only makes them tidier.
    Exceptions escaping ``asyncio.run()`` reach ``sys.excepthook``.
    """
    if loop is None:
        import asyncio

        loop = asyncio.get_running_loop()
    loop.set_exception_handler(_asyncio_handler)


# ---------------------------------------------------------------------------
# configure() and friends.
# ---------------------------------------------------------------------------


def configure(
    level: int | str | None = None,
    *,
    format: str | None = None,
    capture_warnings: bool = True,
    excepthooks: bool = True,
    source: bool = True,
    **context: str | None,
) -> logging.Logger:
    """Set up root logging for a container; returns the root logger.

    ``level``: a level name or number; default ``HAL_LOG_LEVEL``, else INFO.
    ``format``: ``"json"``, ``"console"`` or ``"auto"``; default ``HAL_LOG_FORMAT``,
    else auto: console only for a person at a terminal (stdout is a TTY, not in a
    container, no run or task id), JSON otherwise (``docker run -t`` included).
    ``context``: context columns over the environment, under any spelling:
    ``run_id=``, ``RunID=``, ``HAL_RUN_ID=`` (``None`` keeps the environment's).
    ``source``: add ``Properties.src`` = ``module:function:line``.

    Calling it again replaces what the previous call set up (no duplicate
    lines). It also removes root handlers writing to stdout/stderr (e.g. from
    ``logging.basicConfig``), which would otherwise duplicate every record as
    unparsed text. Other handlers (files, OpenTelemetry) are kept.
    """
    overrides = normalize_context(context)  # raises TypeError on unknown names
    number, level_warning = _resolve_level(level)
    stdout = sys.stdout
    ctx = full_context(overrides)
    fmt, format_warning = _resolve_format(format, stdout, ctx)

    root = logging.getLogger()
    for h in list(root.handlers):
        stream = getattr(h, "stream", None)
        if (
            h is _state.handler
            or _is_ours(h)
            or (
                type(h) is logging.StreamHandler
                and stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
            )
        ):
            root.removeHandler(h)
    handler = StdoutHandler()
    handler.hal_logging = True  # type: ignore[attr-defined]
    formatter: logging.Formatter
    if fmt == "console":
        color = bool(stdout is not None and stdout.isatty() and not os.environ.get("NO_COLOR"))
        formatter = ConsoleFormatter(color=color)
    else:
        formatter = JsonFormatter(context=ctx, source=source)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(number)
    _state.handler = handler

    _line_buffer(stdout)

    current = logging.getLogRecordFactory()
    if not _is_ours(current):
        _state.previous_factory = current
        logging.setLogRecordFactory(_record_factory(current))

    if excepthooks:
        if not _is_ours(sys.excepthook):
            _state.previous_excepthook = sys.excepthook
            sys.excepthook = _excepthook
        if not _is_ours(threading.excepthook):
            _state.previous_threading_hook = threading.excepthook
            threading.excepthook = _threading_excepthook
        if "asyncio" in sys.modules:  # not imported: no loop can be running
            try:
                install_asyncio_handler()
            except RuntimeError:  # no running loop: asyncio's default handler logs anyway
                pass
    if capture_warnings:
        logging.captureWarnings(True)
        _state.captured_warnings = True

    for text in (level_warning, format_warning):
        if text:
            _log.warning(text)
    _install_otel(root, ctx)
    return root


def _install_otel(root: logging.Logger, ctx: Mapping[str, str]) -> None:
    """If an OTLP endpoint is configured, add hal_logging.otel's handler (issue 7)."""
    if _state.otel_handler is not None:
        root.removeHandler(_state.otel_handler)
        _state.otel_handler = None
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    try:
        from hal_logging.otel import install_otel_handler  # type: ignore[import-not-found, unused-ignore]
    except ImportError as err:
        _log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry export is unavailable (%s); "
            "install hal-logging[otel] to export, records still go to stdout",
            err,
        )
        return
    try:
        _state.otel_handler = install_otel_handler(root, ctx)
    except Exception:
        _log.warning(
            "OpenTelemetry export could not be set up; records still go to stdout", exc_info=True
        )


def reset() -> None:
    """Undo ``configure()``: remove its handlers and hooks (for tests and embedders)."""
    root = logging.getLogger()
    for h in (_state.handler, _state.otel_handler):
        if h is not None:
            root.removeHandler(h)
    _state.handler = _state.otel_handler = None
    if _is_ours(sys.excepthook):
        sys.excepthook = _state.previous_excepthook or sys.__excepthook__
    if _is_ours(threading.excepthook):
        threading.excepthook = _state.previous_threading_hook or threading.__excepthook__
    factory = logging.getLogRecordFactory()
    if _is_ours(factory):
        logging.setLogRecordFactory(getattr(factory, "previous", logging.LogRecord))
    if _state.captured_warnings:
        logging.captureWarnings(False)
        _state.captured_warnings = False


def get_logger(name: str | None = None) -> logging.Logger:
    """``logging.getLogger(name)``: records go through ``configure()``'s handler via root."""
    return logging.getLogger(name)


# bind/unbind live in hal_logging.context; re-exported here for ``hal_logging``.
_ = (bind, unbind, Binding)
