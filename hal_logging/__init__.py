"""hal-logging: every line a HAL benchmark container prints, in Azure Monitor.

Container side (light: stdlib, python-json-logger, orjson)::

    import hal_logging
    hal_logging.configure()          # JSON rows on stdout, context from HAL_* env

VM side: the ``hal-logging-forward`` command, and for in-process Python
``AzureMonitorHandler``, ``setup_logging``, ``is_running_in_azure_vm`` and
``vm_metadata`` — loaded lazily, so ``import hal_logging`` never imports the
Azure or OpenTelemetry SDKs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hal_logging.adapter import BenchmarkLoggerAdapter, get_context_logger
from hal_logging.configure import bind, configure, get_logger, install_asyncio_handler, unbind
from hal_logging.formatter import ConsoleFormatter, JsonFormatter, StdoutHandler

__version__ = "0.1.0"

_LAZY = {
    "AzureMonitorHandler": "hal_logging.azure.handler",
    "is_running_in_azure_vm": "hal_logging.azure.vm",
    "vm_metadata": "hal_logging.azure.vm",
    "setup_logging": "hal_logging.azure.setup",
}

if TYPE_CHECKING:
    from hal_logging.azure.handler import AzureMonitorHandler
    from hal_logging.azure.setup import setup_logging
    from hal_logging.azure.vm import is_running_in_azure_vm, vm_metadata


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hal_logging' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AzureMonitorHandler",
    "BenchmarkLoggerAdapter",
    "ConsoleFormatter",
    "JsonFormatter",
    "StdoutHandler",
    "__version__",
    "bind",
    "configure",
    "get_context_logger",
    "get_logger",
    "install_asyncio_handler",
    "is_running_in_azure_vm",
    "setup_logging",
    "unbind",
    "vm_metadata",
]
