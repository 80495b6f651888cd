"""``setup_logging(log_dir, run_id, use_vm=False)``: the harness's logging, VM side.

Same call as the seed's (``hal/utils/logging_utils.py``): a log file under
``log_dir`` and a console handler on the root logger, plus Azure Monitor when
the harness runs *on* an Azure VM. What changed, and why:

- The file holds wire lines (JSON rows, docs/contract.md §2), not free text: the same
  file can be shipped later with ``hal-logging-forward FILE`` and loses no
  field; ``file_format="text"`` keeps the old readable format.
- Every row carries the run's context (RunID from ``run_id``, the rest from
  ``HAL_*`` variables and ``context=``), LogType ``VMOperation``, and on Azure
  the VM's name from IMDS. The old adapter was never wired in, so RunID stayed
  empty (docs/facts.md §4).
- "On an Azure VM" is decided by :func:`hal_logging.azure.vm.is_running_in_azure_vm`:
  off Azure no network call at all (the old check waited 2 s on IMDS).
- On Azure with settings missing, :class:`AzureSettingsError` names the missing
  variables and where they come from, *before* any handler is touched.
- Chatty libraries (azure-core's HTTP policy logs every request, identity,
  urllib3, httpx) are set to WARNING so they neither flood the table nor the
  console. The Azure handler also ignores them itself, whatever their level:
  a record about sending a batch must never become part of the next batch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from hal_logging.context import full_context, normalize_context
from hal_logging.schema import LOG_TYPE_VM, STREAM_NAME

if TYPE_CHECKING:
    from hal_logging.azure.handler import AzureMonitorHandler

_log = logging.getLogger("hal_logging.setup")

ENDPOINT_ENV: Final = "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"
RULE_ID_ENV: Final = "AZURE_MONITOR_DATA_COLLECTION_RULE_ID"
STREAM_ENV: Final = "AZURE_MONITOR_STREAM_NAME"

#: Libraries that log every HTTP request or token fetch at INFO/DEBUG.
NOISY_LOGGERS: Final[tuple[str, ...]] = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure.monitor.ingestion",
    "msal",
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "openai",
    "anthropic",
    "opentelemetry",
)

#: Marks handlers installed here, so a second call replaces them.
_MARK: Final = "_hal_setup_logging"


class AzureSettingsError(RuntimeError):
    """On an Azure VM, but Azure Monitor settings are missing; the message names them."""


@dataclass
class LoggingSetup:
    """What :func:`setup_logging` installed (the seed returned None; this is extra)."""

    log_file: Path
    context: dict[str, str]
    handlers: list[logging.Handler] = field(default_factory=list)
    azure_handler: AzureMonitorHandler | None = None
    on_azure: bool = False


def azure_settings(environ: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """(endpoint, rule id, stream) from the environment, or AzureSettingsError naming what's missing."""
    env = os.environ if environ is None else environ
    endpoint = env.get(ENDPOINT_ENV, "").strip()
    rule_id = env.get(RULE_ID_ENV, "").strip()
    stream = env.get(STREAM_ENV, "").strip() or STREAM_NAME
    missing = [
        name for name, value in ((ENDPOINT_ENV, endpoint), (RULE_ID_ENV, rule_id)) if not value
    ]
    if missing:
        raise AzureSettingsError(
            "Azure Monitor logging is on (use_vm=True, running on an Azure VM) but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            f"Set {ENDPOINT_ENV} to the Data Collection Endpoint's logs ingestion URL and "
            f"{RULE_ID_ENV} to the rule's immutable id (dcr-...), optionally {STREAM_ENV} "
            f"(default {STREAM_NAME}); infrastructure/azure/setup-logging.sh prints them. "
            "Or pass use_vm=False to log to file and console only."
        )
    return endpoint, rule_id, stream


def quiet_noisy_loggers(names: Iterable[str] = NOISY_LOGGERS, level: int = logging.WARNING) -> None:
    """Raise the level of chatty libraries' loggers (only ever raises it)."""
    for name in names:
        lg = logging.getLogger(name)
        if lg.level < level:
            lg.setLevel(level)


def setup_logging(
    log_dir: str | os.PathLike[str],
    run_id: str,
    use_vm: bool = False,
    *,
    level: int | str = logging.INFO,
    console: bool = True,
    console_stream: TextIO | None = None,
    file_format: str = "json",
    context: Mapping[str, str | None] | None = None,
    azure_options: Mapping[str, Any] | None = None,
    quiet: Iterable[str] = NOISY_LOGGERS,
) -> LoggingSetup:
    """Configure root logging for a harness run (the seed's signature, and more).

    ``log_dir``/``run_id``: the file is ``log_dir/<basename(run_id)>.log``.
    ``use_vm``: also send to Azure Monitor *if* this process runs on an Azure VM
    (the orchestrator laptop with ``use_vm=True`` just logs locally, and says so).
    ``context``: context columns under any spelling (``task_id=``, ``TaskID=``).
    ``azure_options``: keyword arguments for :class:`AzureMonitorHandler`
    (``batch_size``, ``flush_interval``, ``spill_path``, ``credential``, ...).

    Raises :class:`AzureSettingsError` on an Azure VM when ``use_vm`` is set but
    the endpoint or rule id is missing, and ``RuntimeError`` when the Azure
    packages are not installed; in both cases nothing was changed.
    """
    if file_format not in ("json", "text"):
        raise ValueError(f"file_format must be 'json' or 'text', not {file_format!r}")
    overrides: dict[str, str | None] = dict(normalize_context(context or {}))
    overrides["RunID"] = run_id
    ctx = full_context(overrides, default_log_type=LOG_TYPE_VM)

    on_azure = False
    azure_handler: AzureMonitorHandler | None = None
    if use_vm:
        from hal_logging.azure import vm

        on_azure = vm.is_running_in_azure_vm()
        if on_azure:
            if not ctx.get("VMName"):
                ctx["VMName"] = vm.trusted_vm_name() or ""
            endpoint, rule_id, stream = azure_settings()
            try:
                from hal_logging.azure.handler import AzureMonitorHandler
            except ImportError as err:
                raise RuntimeError(
                    "Azure Monitor logging needs the Azure packages: "
                    f"pip install 'hal-logging[azure]' ({err})"
                ) from err
            azure_handler = AzureMonitorHandler(
                endpoint, rule_id, stream, context=ctx, **dict(azure_options or {})
            )

    from hal_logging.formatter import ConsoleFormatter, JsonFormatter

    directory = Path(log_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / f"{os.path.basename(run_id) or 'run'}.log"

    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if getattr(h, _MARK, False):
            h.close()  # ours from an earlier call: flush its file / Azure queue
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root.setLevel(number if isinstance(number, int) else logging.INFO)

    handlers: list[logging.Handler] = []
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(
        JsonFormatter(context=ctx)
        if file_format == "json"
        else logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    )
    handlers.append(file_handler)
    if console:
        out = console_stream if console_stream is not None else sys.stdout
        console_handler = logging.StreamHandler(out)
        isatty = getattr(out, "isatty", None)
        color = bool(isatty and isatty() and not os.environ.get("NO_COLOR"))
        console_handler.setFormatter(ConsoleFormatter(color=color))
        handlers.append(console_handler)
    if azure_handler is not None:
        handlers.append(azure_handler)
    for h in handlers:
        setattr(h, _MARK, True)
        root.addHandler(h)

    quiet_noisy_loggers(quiet)

    if azure_handler is not None:
        _log.info(
            "Azure Monitor logging enabled (Azure VM %s, stream %s)",
            ctx.get("VMName") or "?",
            azure_handler.stream_name,
        )
    elif use_vm:
        _log.info("Azure Monitor logging skipped: not running on an Azure VM")
    _log.info("Logging initialized: run %s, log file %s", run_id, log_file)
    return LoggingSetup(log_file, ctx, handlers, azure_handler, on_azure)
