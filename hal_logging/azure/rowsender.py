"""What the logging handler's sender needs from a delivery engine, and the default one: the uploader.

The handler's rows are wire lines, serialised once by the formatter in the
caller's thread; :class:`UploaderSender` hands them to the forwarder's engine
(:class:`hal_logging.azure.uploader.Uploader`) without parsing them again.
Tests and other destinations pass their own :class:`RowSender`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from hal_logging import _json
from hal_logging.schema import MAX_FIELD_BYTES, WIRE_PREFIX, WIRE_VERSION_KEY

__all__ = ["Deadline", "RowSender", "UploaderSender"]

Deadline = Callable[[], "float | None"]


class RowSender(Protocol):
    """What the handler needs from a delivery engine.

    ``send(lines, deadline)`` gets wire lines (``{"_hal":1,...}``, one row each)
    and returns when they were accepted or dead-lettered as refused by the
    service (optionally returning an object with ``delivered`` and
    ``dead_lettered`` counts); it raises when they could not be delivered.
    ``deadline()`` is a ``time.monotonic()`` value to give up by, or None.
    """

    def send(self, lines: Sequence[bytes], deadline: Deadline) -> Any: ...

    def close(self) -> None: ...


class UploaderSender:
    """The default :class:`RowSender`: :class:`hal_logging.azure.uploader.Uploader`.

    A thin adapter: wire lines become row bytes (the marker dropped) and go to
    ``Uploader.send_encoded`` as they are, so a row is serialised once, in the
    caller's thread, by the formatter. The rare row over 64 KB goes through
    ``rowfit.fit_row`` first, as ``Uploader.send`` would do.
    """

    def __init__(
        self,
        dce_endpoint: str,
        dcr_id: str,
        stream_name: str,
        *,
        credential: Any = None,
        dead_letter: Path | None = None,
        retry_timeout: float | None = 120.0,
        read_timeout: float = 10.0,
    ) -> None:
        from hal_logging.azure.rowfit import fit_row
        from hal_logging.azure.uploader import Uploader, UploadSettings

        self._fit_row = fit_row
        self.retry_timeout = retry_timeout
        # Inline sends (max_in_flight=0): requests run in the handler's own daemon
        # sender thread, so a hung request never holds up interpreter exit beyond
        # close_timeout (a pool thread would be joined at exit).
        self.settings = UploadSettings(
            retry_timeout=retry_timeout, read_timeout=read_timeout, max_in_flight=0
        )
        self.uploader = Uploader(
            dce_endpoint,
            dcr_id,
            stream_name,
            credential="auto" if credential is None else credential,
            dead_letter=dead_letter,
            settings=self.settings,
        )

    def encode(self, lines: Sequence[bytes]) -> list[bytes]:
        out: list[bytes] = []
        cut = len(WIRE_PREFIX)
        for line in lines:
            data = b"{" + line[cut:] if line.startswith(WIRE_PREFIX) else line
            if len(data) > MAX_FIELD_BYTES:
                row = _json.loads(data)
                row.pop(WIRE_VERSION_KEY, None)
                _, data, _ = self._fit_row(row, self.settings.max_request_bytes)
            out.append(data)
        return out

    def send(self, lines: Sequence[bytes], deadline: Deadline) -> Any:
        """Deliver, retrying for at most ``retry_timeout`` or until ``deadline()``."""
        limit = self.retry_timeout
        own = None if limit is None else time.monotonic() + limit

        def combined() -> float | None:
            outer = deadline()
            if own is None:
                return outer
            return own if outer is None else min(own, outer)

        return self.uploader.send_encoded(self.encode(lines), deadline=combined)

    def close(self) -> None:
        self.uploader.close()
