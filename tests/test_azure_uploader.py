"""The delivery engine: exact packing, fitting, retries, bisecting, dead letters, fatal errors.

Packing and fitting are pure functions (property tests); delivery runs the
real SDK and credential over TLS against the in-process stand-in.
"""

from __future__ import annotations

import gzip
import itertools
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.azure import credentials as creds
from hal_logging.azure import packing
from hal_logging.azure.rowfit import REQUEST_OVERHEAD, fit_row
from hal_logging.azure.uploader import (
    MAX_REQUEST_BYTES,
    EncodedRows,
    Uploader,
    UploadResult,
    UploadSettings,
    join_rows,
    plan_packets,
)
from hal_logging.emulator import REJECT_MARKER, Emulator
from hal_logging.pipeline.model import DeliveryError
from tests import azure_helpers

emulator = azure_helpers.emulator  # fixtures shared with the other Azure tests
azure_env = azure_helpers.azure_env

pytestmark = pytest.mark.timeout(90)
FAST = UploadSettings(backoff_base=0.01, backoff_max=0.05, max_in_flight=3)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def make_row(i: int, message: str | None = None, **props: Any) -> dict[str, Any]:
    row = schema.empty_row()
    row.update(
        TimeGenerated=_now(),
        Level="INFO",
        Message=message if message is not None else f"line {i} " + "x" * (i % 200),
        LoggerName="docker.stdout",
        RunID="run-1",
        TaskID="task-1",
        LogType="AgentLog",
    )
    row["Properties"] = {
        "hal": {"record_id": f"rid-{i}", "stream": "stdout", "format": "text"},
        **props,
    }
    return row


def uploader(emu: Emulator, tmp_path: Path, **settings: Any) -> Uploader:
    opts = {**FAST.__dict__, **settings}
    return Uploader(
        emu.endpoint,
        emu.rule_id,
        emu.stream,
        credential="managed-identity",
        dead_letter=tmp_path / "dead.jsonl",
        settings=UploadSettings(**opts),
    )


# --- packing --------------------------------------------------------------------------


@given(
    st.lists(st.integers(min_value=2, max_value=5000), max_size=400),
    st.integers(min_value=5002, max_value=40000),
)
def test_plan_packets_exact_complete_ordered(sizes: list[int], limit: int) -> None:
    ranges = plan_packets(sizes, limit)
    assert [i for a, b in ranges for i in range(a, b)] == list(
        range(len(sizes))
    )  # each once, in order
    for a, b in ranges:
        assert b > a
        assert 2 + sum(sizes[a:b]) + (b - a - 1) <= limit  # "[" + rows joined by "," + "]"
    for (a, _b), (c, _c) in itertools.pairwise(ranges):
        assert 2 + sum(sizes[a : c + 1]) + (c - a) > limit  # a packet is only closed when full


@given(st.lists(st.text(max_size=3000), min_size=1, max_size=60))
def test_pack_bodies_within_both_limits(messages: list[str]) -> None:
    limit = 20_000
    up = Uploader("https://127.0.0.1:9", "dcr-x", settings=UploadSettings(max_request_bytes=limit))
    rows = [make_row(i, m) for i, m in enumerate(messages)]
    encoded = up.encode(rows)
    assert [_json.loads(encoded.row(i)) for i in range(len(encoded))] == rows
    packets = up.pack(encoded)
    assert [r for p in packets for r in p.rows()] == [encoded.row(i) for i in range(len(rows))]
    for p in packets:
        assert len(join_rows(p.rows())) == p.raw_size <= limit
        assert len(p.body) <= limit
        assert gzip.decompress(p.body) == join_rows(p.rows())
    up.close()


def test_incompressible_body_is_halved_to_fit_compressed() -> None:
    limit = 50_000
    up = Uploader(
        "https://127.0.0.1:9",
        "dcr-x",
        settings=UploadSettings(max_request_bytes=limit, compress_level=0),
    )
    rows = [make_row(i, os.urandom(3000).hex()) for i in range(30)]
    packets = up.pack(up.encode(rows))
    assert all(len(p.body) <= limit and p.raw_size <= limit for p in packets)
    assert sum(p.count for p in packets) == 30 and len(packets) > 1
    up.close()


# --- fitting --------------------------------------------------------------------------


def test_properties_with_many_64kb_values_are_fitted() -> None:
    big = {f"k{i}": "v" * schema.MAX_FIELD_BYTES for i in range(40)}  # 2.6 MB of Properties
    row = make_row(1, **big, small="kept")
    fitted, data, changed = fit_row(row, MAX_REQUEST_BYTES)
    assert changed and len(data) <= MAX_REQUEST_BYTES - REQUEST_OVERHEAD
    props = fitted["Properties"]
    assert len(_json.dumps(props)) <= schema.MAX_FIELD_BYTES
    assert props["small"] == "kept" and props["hal"]["record_id"] == "rid-1"
    assert props["hal"]["original_length"]["Properties.k0"] == schema.MAX_FIELD_BYTES + 2
    assert row["Properties"]["k0"] == "v" * schema.MAX_FIELD_BYTES  # the caller's row is untouched


def test_escape_heavy_columns_still_fit_one_request() -> None:
    row = make_row(2)
    for col in schema.STRING_COLUMNS:
        row[col] = "\x00" * schema.MAX_FIELD_BYTES  # 6 bytes each on the wire: 4.7 MB in all
    fitted, data, changed = fit_row(row, MAX_REQUEST_BYTES)
    assert changed and len(data) <= MAX_REQUEST_BYTES - REQUEST_OVERHEAD
    assert fitted["Properties"]["hal"]["record_id"] == "rid-2"
    assert set(fitted["Properties"]["hal"]["original_length"]) >= {"Message"}


@given(
    st.dictionaries(st.text(max_size=30), st.text(max_size=70_000) | st.integers(), max_size=6),
    st.text(max_size=90_000),
)
def test_fit_row_always_fits(props: dict[str, Any], message: str) -> None:
    row = make_row(3, message)
    row["Properties"].update((k, v) for k, v in props.items() if k != "hal")
    fitted, data, _ = fit_row(row, MAX_REQUEST_BYTES)
    assert len(data) <= MAX_REQUEST_BYTES - REQUEST_OVERHEAD
    assert _json.loads(data) == _json.loads(_json.dumps(fitted))
    for col in schema.STRING_COLUMNS:
        assert len(fitted[col].encode("utf-8", "surrogatepass")) <= schema.MAX_FIELD_BYTES
    assert len(_json.dumps(fitted["Properties"])) <= schema.MAX_FIELD_BYTES
    assert fitted["Properties"]["hal"]["record_id"] == "rid-3"


def test_old_and_future_times_are_kept_in_properties(tmp_path: Path) -> None:
    up = Uploader("https://127.0.0.1:9", "dcr-x")
    old = make_row(1)
    old["TimeGenerated"] = "2001-02-03T04:05:06.123456Z"
    future = make_row(2)
    future["TimeGenerated"] = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    odd = make_row(3)
    odd["TimeGenerated"] = "yesterday"
    fine = make_row(4)
    enc = up.encode([old, future, odd, fine])
    encoded = [_json.loads(enc.row(i)) for i in range(4)]
    assert encoded[0]["Properties"]["hal"]["original_time"] == "2001-02-03T04:05:06.123456Z"
    assert encoded[1]["Properties"]["hal"]["original_time"] == future["TimeGenerated"]
    assert encoded[2]["Properties"]["hal"]["original_time"] == "yesterday"
    assert encoded[0]["TimeGenerated"] > "2020"
    assert encoded[3] == fine
    up.close()


# --- delivery against the stand-in ------------------------------------------------------


@pytest.mark.parametrize("gzip_impl", ["isal", "zlib"])
def test_delivers_in_exact_requests(
    emulator: Emulator,
    azure_env: dict[str, str],
    tmp_path: Path,
    gzip_impl: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if gzip_impl == "zlib":  # the fallback when isal is not installed
        monkeypatch.setattr(packing, "_isal_zlib", None)
    else:
        assert packing._isal_zlib is not None  # the azure extra (dev installs it) brings it
    rows = [make_row(i) for i in range(12_000)]  # ~5 MB: several full requests
    with uploader(emulator, tmp_path) as up:
        total = sum(size + 1 for size in up.encode(rows).sizes()) + 1
        result = up.send(rows)
    stats = emulator.stats()
    assert result.delivered == 12_000 and result.dead_lettered == 0
    assert (
        stats["max_uncompressed_bytes"] <= MAX_REQUEST_BYTES
        and stats["max_compressed_bytes"] <= MAX_REQUEST_BYTES
    )
    assert stats["max_uncompressed_bytes"] > MAX_REQUEST_BYTES - 1000  # full: no wasted requests
    assert (
        stats["requests"] == result.requests == -(-total // MAX_REQUEST_BYTES)
    )  # the fewest possible
    assert sorted(emulator.workspace.record_ids()) == sorted(f"rid-{i}" for i in range(12_000))


@pytest.mark.parametrize(
    "fault", ["429", "429-no-retry-after", "408", "500", "502", "503", "504", "cut", "slow"]
)
def test_retryable_faults_are_retried(
    emulator: Emulator, azure_env: dict[str, str], tmp_path: Path, fault: str
) -> None:
    emulator.set_faults(script=[fault, fault], retry_after=0.05, slow_seconds=0.05)
    with uploader(emulator, tmp_path, max_in_flight=1) as up:
        result = up.send([make_row(i) for i in range(50)])
    assert result.delivered == 50
    assert emulator.workspace.record_ids() == [f"rid-{i}" for i in range(50)]  # no duplicates
    expected_retries = 0 if fault == "slow" else 2
    assert result.retries == expected_retries and result.requests == expected_retries + 1


@pytest.mark.parametrize("fault", ["stored-500", "stored-cut"])
def test_stored_then_failed_duplicates_only_that_request(
    emulator: Emulator, azure_env: dict[str, str], tmp_path: Path, fault: str
) -> None:
    emulator.set_faults(script=[fault])
    with uploader(emulator, tmp_path, max_in_flight=1) as up:
        result = up.send([make_row(i) for i in range(20)])
    assert result.delivered == 20
    ids = emulator.workspace.record_ids()
    assert ids == [f"rid-{i}" for i in range(20)] * 2  # removable by record_id
    assert result.unknown_outcomes == (1 if fault == "stored-cut" else 0)


def test_read_timeout_is_an_unknown_outcome_and_retried(
    emulator: Emulator, azure_env: dict[str, str], tmp_path: Path
) -> None:
    emulator.set_faults(script=["slow"], slow_seconds=0.6)
    with uploader(emulator, tmp_path, read_timeout=0.2) as up:
        result = up.send([make_row(i) for i in range(5)])
    assert result.delivered == 5 and result.unknown_outcomes == 1
    azure_helpers.wait_for(
        lambda: emulator.workspace.count() == 10, what="the slow request to be stored too"
    )


def test_refused_rows_are_bisected_and_dead_lettered(
    emulator: Emulator, azure_env: dict[str, str], tmp_path: Path
) -> None:
    rows = [make_row(i, f"poison {REJECT_MARKER}" if i in (17, 640) else None) for i in range(1000)]
    with uploader(emulator, tmp_path) as up:
        result = up.send(rows)
    assert result.delivered == 998 and result.dead_lettered == 2
    stored = emulator.workspace.record_ids()
    assert sorted(stored) == sorted(f"rid-{i}" for i in range(1000) if i not in (17, 640))
    lines = (tmp_path / "dead.jsonl").read_bytes().splitlines()
    assert len(lines) == 2 and all(line.startswith(schema.WIRE_PREFIX) for line in lines)
    dead = [_json.loads(line) for line in lines]
    assert sorted(d["Properties"]["hal"]["record_id"] for d in dead) == ["rid-17", "rid-640"]
    answer = dead[0]["Properties"]["hal"]["dead_letter"]
    assert (
        answer["status"] == 400
        and answer["code"] == "InvalidPayload"
        and REJECT_MARKER in answer["message"]
    )


def test_413_is_bisected(emulator: Emulator, azure_env: dict[str, str], tmp_path: Path) -> None:
    # An uploader configured above the service's limit: the service's 413 must be handled.
    with uploader(emulator, tmp_path, max_request_bytes=3 * MAX_REQUEST_BYTES) as up:
        result = up.send([make_row(i, "y" * 2000) for i in range(1200)])
    assert result.delivered == 1200 and result.dead_lettered == 0
    assert emulator.stats()["status"]["413"] >= 1
    assert sorted(emulator.workspace.record_ids()) == sorted(f"rid-{i}" for i in range(1200))


def test_refused_rows_without_dead_letter_file_are_not_dropped(
    emulator: Emulator, azure_env: dict[str, str]
) -> None:
    up = Uploader(emulator.endpoint, emulator.rule_id, credential="managed-identity", settings=FAST)
    with pytest.raises(DeliveryError, match="no dead-letter file"):
        up.send([make_row(1, REJECT_MARKER)])
    up.close()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"forbidden": True}, ["Monitoring Metrics Publisher", "30 minutes"]),
        ({"rule": "dcr-ffffffffffffffffffffffffffffffff"}, ["immutable id", "dcr-", "Custom-"]),
        ({"stream": "Custom-Missing_CL"}, ["stream", "Custom-"]),
        ({"fault": "401"}, ["az login", "managed identity"]),
    ],
)
def test_fatal_answers_stop_with_what_to_check(
    emulator: Emulator,
    azure_env: dict[str, str],
    tmp_path: Path,
    change: dict[str, Any],
    words: list[str],
) -> None:
    if change.get("forbidden"):
        emulator.config.forbidden = True
    if "fault" in change:
        emulator.set_faults(down=change["fault"])
    up = Uploader(
        emulator.endpoint,
        change.get("rule", emulator.rule_id),
        change.get("stream", emulator.stream),
        credential="managed-identity",
        dead_letter=tmp_path / "dead.jsonl",
        settings=FAST,
    )
    with pytest.raises(DeliveryError) as info:
        up.send([make_row(i) for i in range(10)])
    up.close()
    assert info.value.fatal
    for word in words:
        assert word in str(info.value)
    assert emulator.workspace.count() == 0 and not (tmp_path / "dead.jsonl").exists()


def test_outage_gives_up_at_the_deadline_and_keeps_rows(
    emulator: Emulator, azure_env: dict[str, str], tmp_path: Path
) -> None:
    emulator.set_faults(down="503", retry_after=0.05)
    deadline: list[float | None] = [None]

    def end_outage_later() -> float | None:
        return deadline[0]

    up = uploader(emulator, tmp_path)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            up.send([make_row(i) for i in range(10)], deadline=end_outage_later)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    azure_helpers.wait_for(
        lambda: emulator.stats()["requests"] >= 3, what="retries during the outage"
    )
    assert worker.is_alive()  # no deadline yet: it keeps waiting the outage out
    import time

    deadline[0] = time.monotonic()  # the drain starts with no time left
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeliveryError) and not errors[0].fatal
    assert "kept for a later run" in str(errors[0])
    up.close()


def test_missing_managed_identity_is_fatal_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IMDS answers 400 "Identity not found" for a user-assigned id the VM does not have.
    with azure_helpers.started_emulator(tmp_path, client_ids=("the-assigned-one",)) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AZURE_CLIENT_ID", "not-assigned-here")
        up = Uploader(emu.endpoint, emu.rule_id, credential="auto", settings=FAST)
        with pytest.raises(DeliveryError) as info:
            up.send([make_row(1)])
        up.close()
        assert emu.workspace.count() == 0
    assert info.value.fatal
    assert "user-assigned managed identity not-assigned-here" in str(info.value)
    assert "AZURE_CLIENT_ID" in str(info.value)


def test_service_principal_from_env(
    emulator: Emulator, azure_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_CLIENT_ID", "app-1")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", emulator.endpoint)
    assert creds.resolve_kind("auto") == "service-principal"
    with Uploader(emulator.endpoint, emulator.rule_id, credential="auto", settings=FAST) as up:
        assert up.send([make_row(1)]).delivered == 1
    assert "service principal app-1" in up.credential_description


def test_credential_choice() -> None:
    sp = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}
    assert creds.resolve_kind("auto", sp) == "service-principal"
    assert creds.resolve_kind("auto", {"AZURE_CLIENT_ID": "c"}) == "managed-identity"
    assert creds.describe("auto", {"AZURE_CLIENT_ID": "c"}) == "user-assigned managed identity c"
    assert creds.describe("auto", {}) == "system-assigned managed identity"
    assert "s" not in creds.describe("auto", sp).split()
    with pytest.raises(creds.CredentialConfigError, match="AZURE_CLIENT_SECRET"):
        creds.make_credential("service-principal", {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"})
    with pytest.raises(creds.CredentialConfigError, match="choose one of"):
        creds.resolve_kind("cli")


def test_importing_the_sink_does_not_import_azure() -> None:
    code = (
        "import sys, hal_logging, hal_logging.pipeline.sinks.azure, hal_logging.azure.uploader;"
        "bad = [m for m in sys.modules if m == 'azure' or m.startswith('azure.')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _record(i: int, **row: Any) -> Any:
    from hal_logging.pipeline.model import Record

    base = schema.empty_row()
    base.update(
        TimeGenerated=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        Level="INFO",
        Message=f'm{i} \u00e9\n"q"',
        LoggerName="agent",
    )
    base["Properties"] = {"i": i, "hal": {"record_id": f"r{i}"}}
    base.update(row)
    return Record(row=base, stream="stdout", start=i * 10, end=i * 10 + 10)


def test_sink_prepare_serialises_once_and_keeps_the_row_writable() -> None:
    """prepare() turns each row into the bytes sent; the record's row still dumps to them."""
    from hal_logging.pipeline.sinks.azure import AzureSink, batches_in_flight

    up = Uploader("https://127.0.0.1:9", "dcr-test")
    sink = AzureSink(up)
    try:
        old = "2001-01-01T00:00:00.000001Z"
        recs = [_record(i) for i in range(5)] + [_record(5, TimeGenerated=old)]
        expected = [_json.dumps(r.row) for r in recs[:5]]
        for r in recs:
            r.columns = ("stale",)
        sink.prepare(recs[:4])
        sink.prepare(recs[4:])
        assert [r.prepared for r in recs[:5]] == expected
        assert all(r.columns is None for r in recs)
        # What the wrap-mode spool writes for an undelivered record: the same row.
        assert [_json.dumps(r.row) for r in recs[:5]] == expected
        late = _json.loads(recs[5].prepared)
        assert late["Properties"]["hal"]["original_time"] == old
        assert _json.loads(_json.dumps(recs[5].row)) == late
        assert any("original_time" in n for n in sink._prepare_notes)
        # Unprepared records (prepare is optional) are encoded by write, in order.
        extra = _record(9)
        want = _json.dumps(extra.row)
        parts = sink._encoded([recs[0], extra, recs[1]], UploadResult())
        assert parts == [expected[0], want, expected[1]]
        enc = EncodedRows.of(parts)
        assert [enc.row(i) for i in range(3)] == parts
        rows = [r.row for r in (_record(1), _record(2))]
        plain = up.encode(rows)
        assert up.encode_each(rows) == [plain.row(0), plain.row(1)]
        assert bytes(enc.buf) == b",".join(parts) + b","
    finally:
        sink.close()
    # A batch fills about one request (AzureSink.batch_bytes): one batch per request in flight.
    assert [batches_in_flight(n) for n in (0, 1, 2, 3, 4, 8)] == [1, 1, 2, 3, 4, 8]


def test_client_reads_proxy_and_ca_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies (with NO_PROXY) and the CA bundle come from the environment at start,
    not on every request: the session no longer looks at the environment itself."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    up = Uploader("https://127.0.0.1:8443", "dcr-test", credential="managed-identity")
    try:
        transport = up.client()._client._pipeline._transport
        assert transport.session.trust_env is False
        assert transport.session.proxies.get("https") == "http://127.0.0.1:9"
        assert transport.connection_config.verify == "/nonexistent/ca.pem"
    finally:
        up.close()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    up = Uploader("https://127.0.0.1:8443", "dcr-test", credential="managed-identity")
    try:
        assert "https" not in up.client()._client._pipeline._transport.session.proxies
    finally:
        up.close()
