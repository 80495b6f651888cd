"""The stand-in is only worth testing against if it is as strict as the service (docs/testing.md)."""

from __future__ import annotations

import gzip
import io
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from hal_logging import _json, schema
from hal_logging.emulator import MAX_REQUEST_BYTES, Emulator, server
from tests import azure_helpers
from tests.azure_helpers import EmulatorProcess, started_emulator

emulator = azure_helpers.emulator  # fixtures shared with the other Azure tests
azure_env = azure_helpers.azure_env

pytestmark = pytest.mark.timeout(60)


_NOW = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _row(i: int = 0, **extra: Any) -> dict[str, Any]:
    row = schema.empty_row()
    row.update(TimeGenerated=_NOW, Level="INFO", Message=f"m{i}", LogType="AgentLog")
    row["Properties"] = {"hal": {"record_id": f"r{i}", "stream": "stdout", "format": "text"}}
    row.update(extra)
    return row


def _post(
    emu: Emulator,
    body: bytes,
    *,
    token: str | None = "issue",
    gzip_it: bool = True,
    rule: str | None = None,
    stream: str | None = None,
    api: str = "2023-01-01",
    content_type: str = "application/json",
) -> requests.Response:
    headers = {"Content-Type": content_type}
    if token == "issue":
        token = emu.issue_token()
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if gzip_it:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    url = f"{emu.endpoint}/dataCollectionRules/{rule or emu.rule_id}/streams/{stream or emu.stream}?api-version={api}"
    return requests.post(url, data=body, headers=headers, verify=str(emu.ca_path), timeout=10)


def _code(resp: requests.Response) -> str:
    return str(resp.json()["error"]["code"])


def test_real_sdk_with_managed_identity_is_accepted(
    emulator: Emulator, azure_env: dict[str, str]
) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.ingestion import LogsIngestionClient

    client = LogsIngestionClient(emulator.endpoint, ManagedIdentityCredential(), retry_total=0)
    client.upload(emulator.rule_id, emulator.stream, [_row(1), _row(2)])
    client.upload(
        emulator.rule_id, emulator.stream, io.BytesIO(gzip.compress(_json.dumps([_row(3)])))
    )
    stats = emulator.stats()
    assert stats["status"] == {"204": 2}
    assert stats["rows_accepted"] == 3 and stats["gzip_requests"] == 2
    assert stats["token_requests"] == 1
    assert emulator.workspace.record_ids() == ["r1", "r2", "r3"]


def test_service_principal_flow(
    emulator: Emulator, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import ClientSecretCredential

    monkeypatch.setenv("AZURE_AUTHORITY_HOST", emulator.endpoint)
    cred = ClientSecretCredential("tenant-1", "app-1", "s3cret", disable_instance_discovery=True)
    token = cred.get_token("https://monitor.azure.com/.default").token
    assert _post(emulator, _json.dumps([_row()]), token=token).status_code == 204


def test_tokens_are_checked(emulator: Emulator) -> None:
    body = _json.dumps([_row()])
    assert _code(_post(emulator, body, token=None)) == "MissingToken"
    assert _post(emulator, body, token="eyJhbGciOi.forged.token").status_code == 401
    assert (
        _code(_post(emulator, body, token=emulator.issue_token(kind="user")))
        == "UnsupportedAccessTokenType"
    )
    assert _code(_post(emulator, body, token=emulator.issue_token(lifetime=-5))) == "ExpiredToken"
    assert emulator.workspace.count() == 0


def test_path_version_rule_stream_role_and_content_type(emulator: Emulator) -> None:
    body = _json.dumps([_row()])
    assert _code(_post(emulator, body, api="2021-11-01-preview")) == "InvalidApiVersion"
    assert _post(emulator, body, rule="dcr-ffffffffffffffffffffffffffffffff").status_code == 404
    assert _post(emulator, body, rule="my-rule-name").status_code == 404
    assert _code(_post(emulator, body, stream="Custom-Other_CL")) == "InvalidStream"
    assert _post(emulator, body, content_type="text/plain").status_code == 415
    emulator.set_faults()  # no-op change is allowed
    emulator.config.forbidden = True
    assert _code(_post(emulator, body)) == "OperationFailed"
    emulator.config.forbidden = False
    assert _post(emulator, body).status_code == 204
    assert emulator.workspace.count() == 1


def test_limit_applies_compressed_and_uncompressed(emulator: Emulator) -> None:
    def array_of(size: int) -> bytes:
        filler = size - len(_json.dumps([{"Message": ""}]))
        out = _json.dumps([{"Message": "a" * filler}])
        assert len(out) == size
        return out

    assert _post(emulator, array_of(MAX_REQUEST_BYTES)).status_code == 204
    resp = _post(
        emulator, array_of(MAX_REQUEST_BYTES + 1)
    )  # gzip makes it tiny; unzipped it is over
    assert resp.status_code == 413 and _code(resp) == "ContentLengthLimitExceeded"
    # Exactly at the limit unzipped, but over it as sent (gzip level 0 only adds framing).
    stored_gzip = gzip.compress(array_of(MAX_REQUEST_BYTES), compresslevel=0)
    assert len(stored_gzip) > MAX_REQUEST_BYTES
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Authorization": f"Bearer {emulator.issue_token()}",
    }
    url = f"{emulator.endpoint}/dataCollectionRules/{emulator.rule_id}/streams/{emulator.stream}?api-version=2023-01-01"
    assert (
        requests.post(
            url, data=stored_gzip, headers=headers, verify=str(emulator.ca_path), timeout=10
        ).status_code
        == 413
    )
    assert _post(emulator, array_of(MAX_REQUEST_BYTES + 1), gzip_it=False).status_code == 413
    stats = emulator.stats()
    assert (
        stats["max_uncompressed_bytes"] == MAX_REQUEST_BYTES + 1
    )  # refused attempts are measured too
    assert stats["over_limit_requests"] == 3 and stats["rows_stored"] == 1


def test_body_must_be_json_array_of_objects(emulator: Emulator) -> None:
    assert _code(_post(emulator, b'{"Message": "x"}')) == "InvalidPayload"
    assert _code(_post(emulator, b'[{"Message": "x"}, 3]')) == "InvalidPayload"
    assert _code(_post(emulator, b"[{not json")) == "InvalidPayload"
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Authorization": f"Bearer {emulator.issue_token()}",
    }
    url = f"{emulator.endpoint}/dataCollectionRules/{emulator.rule_id}/streams/{emulator.stream}?api-version=2023-01-01"
    bad = requests.post(
        url, data=b"not gzip at all", headers=headers, verify=str(emulator.ca_path), timeout=10
    )
    assert _code(bad) == "InvalidContentEncoding"
    assert emulator.workspace.count() == 0


def test_notes_long_fields_unknown_columns_and_replaces_old_times(emulator: Emulator) -> None:
    rows = [
        _row(
            1,
            Message="x" * (schema.MAX_FIELD_BYTES + 1),
            Extra="billed",
            TimeGenerated="2001-01-01T00:00:00Z",
        ),
        _row(2, Extra2=1, Properties={"big": "y" * schema.MAX_FIELD_BYTES}),
    ]
    assert _post(emulator, _json.dumps(rows)).status_code == 204
    stats = emulator.stats()
    assert stats["fields_over_64kb"] == 2
    assert stats["undeclared_columns"] == {"Extra": 1, "Extra2": 1}
    assert stats["time_replaced"] == 1
    stored = emulator.workspace.rows()
    assert stored[0]["TimeGenerated"] > "2020" and stored[1]["TimeGenerated"] == _NOW


@pytest.mark.parametrize(
    ("fault", "status", "stored", "retry_after"),
    [
        ("429", 429, False, "1"),
        ("429-no-retry-after", 429, False, None),
        ("408", 408, False, None),
        ("500", 500, False, None),
        ("502", 502, False, None),
        ("503", 503, False, "1"),
        ("504", 504, False, None),
        ("stored-500", 500, True, None),
    ],
)
def test_error_faults(
    emulator: Emulator, fault: str, status: int, stored: bool, retry_after: str | None
) -> None:
    emulator.set_faults(script=[fault])
    resp = _post(emulator, _json.dumps([_row()]))
    assert resp.status_code == status
    assert resp.headers.get("Retry-After") == retry_after
    assert emulator.workspace.count() == int(stored)
    assert (
        _post(emulator, _json.dumps([_row()])).status_code == 204
    )  # the script was one request long
    assert emulator.stats()["faults"] == {fault: 1}


@pytest.mark.parametrize(("fault", "stored"), [("cut", 0), ("stored-cut", 1)])
def test_connection_cut_faults(emulator: Emulator, fault: str, stored: int) -> None:
    emulator.set_faults(script=[fault])
    with pytest.raises(requests.ConnectionError):
        _post(emulator, _json.dumps([_row()]))
    assert emulator.workspace.count() == stored
    assert emulator.stats()["status"] == {"cut": 1}


def test_slow_answer_stores_after_the_delay(emulator: Emulator) -> None:
    emulator.set_faults(script=["slow"], slow_seconds=0.2)
    assert _post(emulator, _json.dumps([_row()])).status_code == 204
    assert emulator.stats()["faults"] == {"slow": 1}
    assert emulator.workspace.count() == 1


def test_rates_are_reproducible_with_a_seed(tmp_path: Path) -> None:
    seen = []
    for name in ("a", "b"):
        with started_emulator(
            tmp_path, name=name, faults={"rates": {"500": 0.3, "503": 0.2}, "seed": 7}
        ) as emu:
            seen.append([_post(emu, _json.dumps([_row(i)])).status_code for i in range(30)])
    assert seen[0] == seen[1]
    assert {204, 500, 503} <= set(seen[0])


def test_outage_on_and_off(emulator: Emulator) -> None:
    emulator.set_faults(down="503")
    assert [_post(emulator, b"[]").status_code for _ in range(3)] == [503, 503, 503]
    emulator.set_faults(down=None)
    assert _post(emulator, b"[]").status_code == 204


def test_restart_keeps_tokens_rows_and_duplicates(tmp_path: Path) -> None:
    with started_emulator(tmp_path) as emu:
        token = emu.issue_token()
        assert _post(emu, _json.dumps([_row(1)]), token=token).status_code == 204
        port = emu.port
        emu.restart()
        assert emu.port == port
        assert _post(emu, _json.dumps([_row(1)]), token=token).status_code == 204
        assert emu.workspace.record_ids() == ["r1", "r1"]  # Azure keeps duplicates
    with sqlite3.connect(tmp_path / "emu.db") as conn:  # readable as a plain workspace file
        assert conn.execute('SELECT COUNT(*) FROM "BenchmarkRuns_CL"').fetchone()[0] == 2


def test_imds_requires_metadata_header_and_serves_instance(emulator: Emulator) -> None:
    url = (
        emulator.imds_url
        + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://monitor.azure.com"
    )
    assert requests.get(url, timeout=5).status_code == 400
    got = requests.get(url, headers={"Metadata": "true"}, timeout=5).json()
    assert got["token_type"] == "Bearer" and got["resource"] == "https://monitor.azure.com"
    doc = requests.get(
        emulator.imds_url + "/metadata/instance?api-version=2021-02-01",
        headers={"Metadata": "true"},
        timeout=5,
    ).json()
    assert doc["compute"]["name"] == "hal-emulated-vm" and doc["compute"]["vmId"]


def test_workspace_of_the_forwarder_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "forwarder.db"
    with sqlite3.connect(db) as conn:
        conn.execute(schema.sqlite_ddl())
    with pytest.raises(ValueError, match="own --db"):
        Emulator(db=str(db), ca_dir=str(tmp_path / "ca"))


def test_cli_process_serves_reports_and_takes_runtime_faults(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path, "--fault", "500=0.0", "--vm-name", "cli-vm") as proc:
        assert proc.env["REQUESTS_CA_BUNDLE"].endswith("ca.pem")
        proc.set_faults(script=["503"])
        token = requests.get(
            proc.env["AZURE_POD_IDENTITY_AUTHORITY_HOST"]
            + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://monitor.azure.com",
            headers={"Metadata": "true"},
            timeout=5,
        ).json()["access_token"]
        url = (
            f"{proc.env['AZURE_MONITOR_DATA_COLLECTION_ENDPOINT']}/dataCollectionRules/"
            f"{proc.env['AZURE_MONITOR_DATA_COLLECTION_RULE_ID']}/streams/{proc.env['AZURE_MONITOR_STREAM_NAME']}"
            "?api-version=2023-01-01"
        )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        codes = [
            requests.post(
                url,
                data=_json.dumps([_row(i)]),
                headers=headers,
                verify=proc.env["REQUESTS_CA_BUNDLE"],
                timeout=10,
            ).status_code
            for i in range(2)
        ]
        assert codes == [503, 204]
        assert proc.stats()["rows_accepted"] == 1
        proc.restart()  # same ports, CA and workspace
        assert (
            requests.post(
                url,
                data=_json.dumps([_row(9)]),
                headers=headers,
                verify=proc.env["REQUESTS_CA_BUNDLE"],
                timeout=10,
            ).status_code
            == 204
        )
    with sqlite3.connect(proc.db) as conn:
        assert [r[0] for r in conn.execute('SELECT "_record_id" FROM "BenchmarkRuns_CL"')] == [
            "r1",
            "r9",
        ]


_times = st.one_of(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(timezone.utc),
    ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.sampled_from(
        [
            "2026-02-30T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:00:60.000000Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01 00:00:00.000000Z",
            "",
        ]
    ),
    st.integers(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"Message": st.text(max_size=50)},
            optional={
                "TimeGenerated": _times,
                "Extra": st.integers(),
                "Properties": st.dictionaries(
                    st.text(max_size=5), st.text(max_size=20), max_size=3
                ),
                "LoggerName": st.sampled_from(["a", "b" * (schema.MAX_FIELD_BYTES + 1)]),
            },
        ),
        max_size=6,
    ),
    st.integers(0, 3),
)
def test_quick_inspection_answers_as_the_row_by_row_one(
    rows: list[dict[str, Any]], near: int
) -> None:
    """The emulator's C-level check says 'nothing to note' only when the row-by-row one notes nothing."""
    now = datetime.now(timezone.utc)
    for row in rows[:near]:  # some rows inside the service's window
        row["TimeGenerated"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = _json.loads(_json.dumps(rows))  # as parsed from a request body
    before = _json.dumps(rows)
    quick = server._nothing_to_note(rows, now - server._TIME_PAST, now + server._TIME_FUTURE)
    over, replaced, undeclared = server._inspect_each(rows, now)
    nothing = over == replaced == 0 and not undeclared
    assert quick <= nothing  # never skips something the slow check notes
    if nothing:
        assert _json.dumps(rows) == before
    usual = [_row(i) for i in range(3)]
    for row in usual:
        row["TimeGenerated"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert server._nothing_to_note(usual, now - server._TIME_PAST, now + server._TIME_FUTURE)
    # a date past its month's end, inside the window as text: not a time the service reads
    feb = [{"TimeGenerated": "2026-02-30T00:00:00.000000Z"}]
    utc = timezone.utc
    assert not server._nothing_to_note(
        feb, datetime(2026, 2, 27, tzinfo=utc), datetime(2026, 3, 3, tzinfo=utc)
    )
