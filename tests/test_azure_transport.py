"""One POST through the real SDK against the local stand-in, and what its answer becomes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hal_logging import _json, schema
from hal_logging.azure.transport import Transport
from hal_logging.emulator import Emulator
from tests import azure_helpers

emulator = azure_helpers.emulator
azure_env = azure_helpers.azure_env

pytestmark = pytest.mark.timeout(60)


def body(n: int) -> bytes:
    rows = []
    for i in range(n):
        row = schema.empty_row()
        row.update(TimeGenerated="2026-12-06T00:00:00.000000Z", Message=f"m{i}")
        row["Properties"] = {"hal": {"record_id": f"t-{i}"}}
        rows.append(row)
    return gzip.compress(_json.dumps(rows))


def transport(emu: Emulator, rule: str | None = None, **kw: float) -> Transport:
    return Transport(
        emu.endpoint,
        rule or emu.rule_id,
        emu.stream,
        credential="managed-identity",
        connection_timeout=kw.get("connection_timeout", 5.0),
        read_timeout=kw.get("read_timeout", 10.0),
        max_in_flight=1,
    )


def test_accepted(emulator: Emulator, azure_env: dict[str, str]) -> None:
    t = transport(emulator)
    try:
        outcome = t.post(body(3))
    finally:
        t.close()
    assert outcome.ok and outcome.status is None
    assert sorted(str(r) for r in emulator.workspace.record_ids()) == ["t-0", "t-1", "t-2"]


def test_throttled_answer_carries_retry_after(
    emulator: Emulator, azure_env: dict[str, str]
) -> None:
    emulator.set_faults(script=["429"], retry_after=7)
    t = transport(emulator)
    try:
        outcome = t.post(body(1))
    finally:
        t.close()
    assert not outcome.ok and outcome.status == 429 and outcome.retry_after == 7.0
    assert outcome.fatal_message is None and not outcome.unknown
    assert outcome.describe().startswith("429")


def test_unknown_rule_is_final_with_what_to_fix(
    emulator: Emulator, azure_env: dict[str, str]
) -> None:
    t = transport(emulator, rule="dcr-ffffffffffffffffffffffffffffffff")
    try:
        outcome = t.post(body(1))
    finally:
        t.close()
    assert outcome.status == 404
    assert outcome.fatal_message is not None and "immutable id" in outcome.fatal_message
    assert emulator.workspace.count() == 0


def test_lost_answer_is_unknown(emulator: Emulator, azure_env: dict[str, str]) -> None:
    emulator.set_faults(script=["cut"])
    t = transport(emulator)
    try:
        outcome = t.post(body(1))
    finally:
        t.close()
    assert not outcome.ok and outcome.status is None and outcome.unknown and outcome.detail


def test_nobody_listening_is_not_sent(tmp_path: Path, azure_env: dict[str, str]) -> None:
    emu = Emulator(ca_dir=str(tmp_path / "ca"), store=False).start()
    endpoint = emu.endpoint
    emu.close()  # the port is closed now: the connection is refused before anything is sent
    t = Transport(
        endpoint,
        "dcr-x",
        "Custom-X",
        credential="managed-identity",
        connection_timeout=2.0,
        read_timeout=2.0,
        max_in_flight=1,
    )
    try:
        outcome = t.post(body(1))
    finally:
        t.close()
    assert not outcome.ok and outcome.status is None and outcome.detail
