"""What every way of delivering rows shares: the row, and the error that says a batch was not delivered.

It sits below both the Azure engine (:mod:`hal_logging.azure`) and the
forwarder's pipeline (:mod:`hal_logging.pipeline`), so that neither imports
the other to speak about rows and failures: the engine is also used alone, by
the VM side's logging handler, which must not load the pipeline.
:mod:`hal_logging.delivery.wirefile` is the durable file of wire lines that
both keep undelivered rows in.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DeliveryError", "Row"]

Row = dict[str, Any]
"""A row of the table: the thirteen columns of :mod:`hal_logging.schema`, Properties a dict."""


class DeliveryError(Exception):
    """A batch could not be delivered now (outage, auth, deadline).

    ``fatal`` means retrying later in this process is pointless (401/403/404,
    disk read-only): the forwarder stops, keeps the checkpoint where it is and
    says what to check. The message says what to do next.
    """

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.status = status
