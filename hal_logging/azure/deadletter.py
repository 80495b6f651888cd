"""The dead letter: rows the service refused for good, kept as wire lines with its answer.

A row the service refuses alone (400, 413 after bisecting) cannot be delivered
by retrying, but it must not be lost: it is appended to the dead-letter file as
a wire line (``{"_hal":1,...}``) with the service's answer in
``Properties.hal.dead_letter``, on disk before the send returns. Once the cause
is fixed, ``hal-logging-forward --resend FILE`` sends it again. The file is
opened per write (refusals are rare) so an operator may move it away meanwhile.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hal_logging import _json, schema
from hal_logging.delivery.wirefile import WireFile, wire_line

__all__ = ["DeadLetter", "dead_letter_line"]

log = logging.getLogger("hal_logging.azure")


def dead_letter_line(row_bytes: bytes, answer: dict[str, Any]) -> bytes:
    """A wire line (``{"_hal":1,...}``) for a refused row, its answer in Properties.hal.dead_letter."""
    try:
        row = _json.loads(row_bytes)
    except _json.JSONDecodeError:
        row = {"Message": row_bytes.decode("utf-8", "replace")}
    if not isinstance(row, dict):
        row = {"Message": _json.dumps_str(row)}
    props = row.get("Properties")
    props = dict(props) if isinstance(props, dict) else ({} if props is None else {"value": props})
    hal = props.get(schema.PROP_HAL)
    hal = dict(hal) if isinstance(hal, dict) else {}
    hal["dead_letter"] = answer
    props[schema.PROP_HAL] = hal
    row["Properties"] = props
    row.pop(schema.WIRE_VERSION_KEY, None)
    return wire_line(_json.dumps(row)) + b"\n"


class DeadLetter:
    """The dead-letter file of one DCR stream (its folder made on the first refusal)."""

    def __init__(self, path: str | os.PathLike[str], rule_id: str, stream: str) -> None:
        self.path = Path(path)
        self.rule_id = rule_id
        self.stream = stream
        self._file = WireFile(self.path, keep_open=False, make_dirs=True)

    def keep(
        self, rows: Sequence[bytes], status: int | None, code: str, message: str, said: str
    ) -> None:
        """Append refused rows (their JSON) with the service's answer; fsynced. Raises OSError."""
        answer = {
            "status": status,
            "code": code,
            "message": message[:2000],
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "rule_id": self.rule_id,
            "stream": self.stream,
        }
        self._file.write(b"".join(dead_letter_line(r, answer) for r in rows))
        log.warning("Azure Monitor refused %d row(s) (%s); kept in %s", len(rows), said, self.path)
