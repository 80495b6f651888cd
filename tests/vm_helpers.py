"""Loopback stand-ins for the VM side's tests: DMI folders and a tiny IMDS.

Nothing here listens on anything but 127.0.0.1, and every test that uses
them points ``HAL_LOGGING_DMI_DIR`` / ``HAL_LOGGING_IMDS_URL`` at them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from hal_logging.azure.vm import AZURE_ASSET_TAG, AZURE_SYS_VENDOR

INSTANCE_DOC: dict[str, Any] = {
    "compute": {
        "name": "hal-vm-007",
        "vmId": "0f3e2a10-1111-2222-3333-444455556666",
        "resourceId": "/subscriptions/sub-1/resourceGroups/hal-rg/providers/Microsoft.Compute/virtualMachines/hal-vm-007",
        "location": "eastus",
        "vmSize": "Standard_D4s_v5",
        "subscriptionId": "sub-1",
        "resourceGroupName": "hal-rg",
    },
    "network": {"interface": []},
}


def make_dmi(folder: Path, vendor: str = AZURE_SYS_VENDOR, tag: str = AZURE_ASSET_TAG) -> Path:
    """Write a DMI folder as the kernel shows it (values end in a newline)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sys_vendor").write_text(vendor + "\n")
    (folder / "chassis_asset_tag").write_text(tag + "\n")
    return folder


@dataclass
class StubIMDS:
    """What the stand-in answers, and what it was asked."""

    status: int = 200
    body: bytes = field(default_factory=lambda: orjson.dumps(INSTANCE_DOC))
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    @property
    def count(self) -> int:
        return len(self.requests)


@contextmanager
def imds_server(stub: StubIMDS | None = None) -> Iterator[StubIMDS]:
    """Serve ``stub`` on a loopback port; also works as an HTTP proxy that counts."""
    state = stub or StubIMDS()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, {k: v for k, v in self.headers.items()}))
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class SilentServer:
    url: str = ""
    accepted: list[socket.socket] = field(default_factory=list)


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """A loopback port that accepts connections and never answers (a hung service).

    ``.url`` is ``http://127.0.0.1:PORT``; ``.accepted`` the connections so far,
    held open (never answered) until exit.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.02)
    state = SilentServer(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            state.accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(5)
        for conn in state.accepted:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
