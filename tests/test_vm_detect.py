"""Azure VM detection: DMI first (no network off Azure), IMDS to confirm.

Every test points the DMI folder and the IMDS URL at fixtures and loopback
servers; nothing can reach the real IMDS link-local address (conftest also
guards sockets).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal_logging.azure import vm
from tests.vm_helpers import (
    INSTANCE_DOC,
    StubIMDS,
    closed_port,
    imds_server,
    make_dmi,
    silent_server,
)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    vm.clear_cache()
    yield
    vm.clear_cache()


@pytest.fixture
def azure_dmi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = make_dmi(tmp_path / "dmi")
    monkeypatch.setenv(vm.DMI_DIR_ENV, str(folder))
    return folder


def test_lazy_exports_are_the_vm_module() -> None:
    import hal_logging

    assert hal_logging.is_running_in_azure_vm is vm.is_running_in_azure_vm
    assert hal_logging.vm_metadata is vm.vm_metadata


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, False),  # no DMI at all (macOS, containers)
        ({"sys_vendor": "Microsoft Corporation\n"}, False),  # Hyper-V guest, not Azure
        ({"sys_vendor": "Microsoft Corporation\n", "chassis_asset_tag": "0000\n"}, False),
        ({"sys_vendor": "QEMU\n", "chassis_asset_tag": "7783-7084-3265-9085\n"}, False),
        (
            {"sys_vendor": "Microsoft Corporation\n", "chassis_asset_tag": "7783-7084-3265-9085\n"},
            True,
        ),
        (
            {"sys_vendor": "Microsoft Corporation", "chassis_asset_tag": " 7783-7084-3265-9085 \n"},
            True,
        ),
    ],
)
def test_dmi_check(tmp_path: Path, files: dict[str, str], expected: bool) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert vm.dmi_says_azure(tmp_path) is expected


def test_off_azure_sends_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not Azure by DMI: no request at all, even though an IMDS would answer."""
    make_dmi(tmp_path, vendor="Microsoft Corporation", tag="not-azure")
    monkeypatch.setenv(vm.DMI_DIR_ENV, str(tmp_path))
    with imds_server() as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        assert vm.is_running_in_azure_vm() is False
        assert vm.vm_metadata() is None
        assert vm.trusted_vm_name() is None
        assert vm.is_running_in_azure_vm(refresh=True) is False
    assert stub.count == 0


def test_default_test_environment_is_not_azure() -> None:
    """conftest's empty DMI folder: the answer comes without network."""
    assert vm.is_running_in_azure_vm() is False
    assert vm.trusted_vm_name() is None


def test_on_azure_confirms_with_imds(azure_dmi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with imds_server() as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url + "/")  # trailing slash tolerated
        assert vm.is_running_in_azure_vm() is True
        meta = vm.vm_metadata()
        assert meta is not None
        compute = INSTANCE_DOC["compute"]
        assert meta.name == compute["name"]
        assert meta.vm_id == compute["vmId"]
        assert meta.resource_id == compute["resourceId"]
        assert meta.location == "eastus" and meta.resource_group == "hal-rg"
        assert meta.as_dict()["vm_size"] == "Standard_D4s_v5"
        assert vm.trusted_vm_name() == "hal-vm-007"
        assert stub.count == 1  # cached: three calls, one request
        path, headers = stub.requests[0]
        assert path == "/metadata/instance?api-version=2021-02-01"
        assert headers.get("Metadata") == "true"
        vm.vm_metadata(refresh=True)
        assert stub.count == 2


def test_concurrent_first_calls_probe_once(
    azure_dmi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imds_server() as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        results: list[bool] = []
        threads = [
            threading.Thread(target=lambda: results.append(vm.is_running_in_azure_vm()))
            for _ in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [True] * 16
        assert stub.count == 1


def test_proxy_settings_are_ignored(azure_dmi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMDS is link-local: a configured proxy must not see the request."""
    with imds_server() as stub, imds_server(StubIMDS(status=502, body=b"{}")) as proxy:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        for var in ("http_proxy", "HTTP_PROXY", "all_proxy"):
            monkeypatch.setenv(var, proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        assert vm.is_running_in_azure_vm() is True
    assert proxy.count == 0
    assert stub.count == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"{}"),
        (404, b"not found"),
        (200, b"<html>captive portal</html>"),
        (200, b"[]"),
        (200, orjson.dumps({"compute": {"name": "x"}})),  # no vmId
        (200, orjson.dumps({"compute": {"vmId": 42, "name": "x"}})),
        (200, b"\xff\xfe garbage"),
    ],
)
def test_bad_imds_answers_mean_not_azure(
    azure_dmi: Path, monkeypatch: pytest.MonkeyPatch, status: int, body: bytes
) -> None:
    with imds_server(StubIMDS(status=status, body=body)) as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        assert vm.is_running_in_azure_vm() is False
        assert vm.vm_metadata() is None
        assert vm.trusted_vm_name() is None
        assert stub.count == 1  # the failure is cached too


def test_imds_unreachable_means_not_azure(azure_dmi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vm.IMDS_URL_ENV, f"http://127.0.0.1:{closed_port()}")
    assert vm.is_running_in_azure_vm() is False


def test_imds_that_never_answers_is_given_up(
    azure_dmi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung IMDS: the probe returns False on its own timeout (checked by a join deadline)."""
    with silent_server() as server:
        monkeypatch.setenv(vm.IMDS_URL_ENV, server.url)
        answer: list[bool] = []
        t = threading.Thread(target=lambda: answer.append(vm.is_running_in_azure_vm()))
        t.start()
        t.join(10)
        assert not t.is_alive(), "IMDS probe did not give up"
        assert answer == [False]


def test_empty_name_is_not_a_trusted_name(azure_dmi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"compute": {**INSTANCE_DOC["compute"], "name": "  "}}
    with imds_server(StubIMDS(body=orjson.dumps(doc))) as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        assert vm.is_running_in_azure_vm() is True
        assert vm.trusted_vm_name() is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["compute", "network", "x"]), _json_values, max_size=3))
def test_from_instance_never_raises(document: dict[str, object]) -> None:
    meta = vm.VMMetadata.from_instance(document)
    assert meta is None or (isinstance(meta.vm_id, str) and meta.vm_id)
