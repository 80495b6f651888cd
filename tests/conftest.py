"""Shared test setup: nothing may leave loopback (docs/testing.md, Rules).

Every test runs with the Azure VM probes pointed at places that cannot be
Azure (an empty DMI folder, a closed loopback port for IMDS) and with Azure
settings removed from the environment, so a forgotten override fails instead
of reaching the real IMDS (link-local) address. A socket guard turns any
attempt to connect to a non-loopback address from the test process into an
error.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")

_AZURE_VARS = (
    "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT",
    "AZURE_MONITOR_DATA_COLLECTION_RULE_ID",
    "AZURE_MONITOR_STREAM_NAME",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "HAL_LOGGING_DB",
)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded(real: Any) -> Any:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
            raise ConnectionRefusedError(f"test tried to reach non-loopback address {address!r}")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True, scope="session")
def _loopback_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    dmi = tmp_path_factory.mktemp("dmi-not-azure")
    saved = {k: os.environ.get(k) for k in (*_AZURE_VARS, "HAL_LOGGING_IMDS_URL", "HAL_LOGGING_DMI_DIR")}
    for k in _AZURE_VARS:
        os.environ.pop(k, None)
    os.environ["HAL_LOGGING_IMDS_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    os.environ["HAL_LOGGING_DMI_DIR"] = str(dmi)
    socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory (the default local workspace lands here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def docker_kit() -> Iterator[Any]:
    """A real Docker daemon and a test image running this checkout's Python.

    Skips (one line) without a daemon; fails instead under
    ``HAL_LOGGING_REQUIRE_DOCKER=1``, as in CI. Removes every container the
    suite labelled, whatever the tests left.
    """
    from tests.docker_helpers import REQUIRED, DockerKit, daemon_problem, ensure_image

    problem = daemon_problem()
    if problem is not None:
        if REQUIRED:
            pytest.fail(f"HAL_LOGGING_REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(problem)
    kit = DockerKit(ensure_image())
    try:
        yield kit
    finally:
        kit.remove(*kit.leftovers())
