"""Azurite (Microsoft's storage emulator) for the archive tests, started and stopped by them.

Over HTTPS with a certificate from the package emulator's test CA, OAuth on
(``--oauth basic``: Azurite reads the bearer token as a JWT and checks its
claims). The real ``azure-storage-blob`` client gets its token from the
emulator's IMDS stand-in, as the ingestion path does. Where Azurite comes
from: ``.tools/node_modules/.bin/azurite-blob`` (``npm install --prefix .tools
azurite``, what scripts/services does) or ``azurite-blob`` on PATH. Missing, the
tests skip with one line, unless ``HAL_LOGGING_REQUIRE_AZURITE=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import stop_process, wait_for

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, in Microsoft's docs): test setup only.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_binary() -> str | None:
    local = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


def require_azurite() -> str:
    path = azurite_binary()
    if path is None or shutil.which("node") is None:
        msg = "Azurite not installed (npm install --prefix .tools azurite, or scripts/services)"
        if os.environ.get("HAL_LOGGING_REQUIRE_AZURITE") == "1":
            pytest.fail(msg + " and HAL_LOGGING_REQUIRE_AZURITE=1")
        pytest.skip(msg)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Azurite:
    """One ``azurite-blob`` process on loopback; :meth:`stop` and :meth:`start` again keep its data."""

    def __init__(self, binary: str, folder: Path, ca_dir: Path) -> None:
        from hal_logging.emulator.tls import load_or_create_ca

        self.binary = binary
        self.folder = folder
        self.port = _free_port()
        ca, _ = load_or_create_ca(ca_dir)
        leaf = ca.issue_cert("127.0.0.1", "localhost")  # type: ignore[attr-defined]
        self.cert = folder / "azurite-cert.pem"
        self.key = folder / "azurite-key.pem"
        self.cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        self.key.write_bytes(leaf.private_key_pem.bytes())
        self.data = folder / "azurite-data"
        self.data.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "azurite.log"

    @property
    def account_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    def container_url(self, name: str) -> str:
        return f"{self.account_url}/{name}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(self.port),
                    "--location",
                    str(self.data),
                    "--oauth",
                    "basic",
                    "--cert",
                    str(self.cert),
                    "--key",
                    str(self.key),
                    "--skipApiVersionCheck",
                    "--silent",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"azurite exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return False

        wait_for(up, 60, "azurite to listen")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)
        self.proc = None

    def admin(self, container: str) -> Any:
        """A ContainerClient with the development key (test setup and checks only)."""
        from azure.storage.blob import ContainerClient

        return ContainerClient(
            self.account_url,
            container,
            credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
            connection_verify=str(self.ca_bundle) if self.ca_bundle else True,
        )

    ca_bundle: Path | None = None
