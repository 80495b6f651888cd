"""The test suite's own guard: nothing leaves loopback (docs/testing.md, Rules)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest


def test_non_loopback_connections_are_refused_before_anything_is_sent() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(ConnectionRefusedError, match="non-loopback"),
    ):
        sock.settimeout(2)  # were the guard missing, fail fast instead of hanging
        sock.connect(("10.255.255.1", 80))  # a private address: must never be tried


def test_vm_probes_point_at_loopback_and_not_at_azure() -> None:
    host = urlsplit(os.environ["HAL_LOGGING_IMDS_URL"]).hostname
    assert host == "127.0.0.1"
    dmi = os.environ["HAL_LOGGING_DMI_DIR"]
    assert not os.path.exists(os.path.join(dmi, "sys_vendor"))  # not an Azure VM
    for var in ("AZURE_MONITOR_DATA_COLLECTION_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
        assert var not in os.environ
