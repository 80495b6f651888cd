"""Local stand-in for the Azure Logs Ingestion API and the VM's IMDS (docs/testing.md).

``from hal_logging.emulator import Emulator`` for in-process use; the
``hal-logging emulator`` command (:mod:`hal_logging.emulator.cli`) for a process.
Needs the ``emulator`` extra (``trustme``) for its TLS certificate; the ``azure``
extra leaves that test-CA library out, so production VMs never carry it.
"""

from hal_logging.emulator.faults import FAULT_KINDS, FaultPlan
from hal_logging.emulator.server import (
    DEFAULT_RULE_ID,
    MAX_REQUEST_BYTES,
    REJECT_MARKER,
    Emulator,
    EmulatorConfig,
    running,
)

__all__ = [
    "DEFAULT_RULE_ID",
    "FAULT_KINDS",
    "MAX_REQUEST_BYTES",
    "REJECT_MARKER",
    "Emulator",
    "EmulatorConfig",
    "FaultPlan",
    "running",
]
