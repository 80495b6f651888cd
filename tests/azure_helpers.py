"""Reusable pieces for tests of the Azure path: the stand-in, in-process or as a process.

Everything listens on 127.0.0.1 only. The real SDK and credential classes are
pointed at the stand-in through the environment (docs/testing.md): ``REQUESTS_CA_BUNDLE``
(the stand-in's CA), ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (its IMDS token path),
``HAL_LOGGING_IMDS_URL`` (instance metadata) and the ``AZURE_MONITOR_*`` settings.

Use from a test module (assigning keeps ruff's F811 quiet)::

    from tests import azure_helpers

    emulator = azure_helpers.emulator  # fixture: a running in-process stand-in
    azure_env = azure_helpers.azure_env  # fixture: this process's env pointed at it

    def test_x(emulator, azure_env): ...

Subprocesses: ``client_env(emu.env())``. Scripted faults: ``emu.set_faults(script=[...],
down="503", rates={...})``. Stand-in as a process (kill/restart): :class:`EmulatorProcess`.

or build one yourself: ``with started_emulator(tmp_path, faults=...) as emu:``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hal_logging import _json
from hal_logging.emulator import Emulator, FaultPlan
from tests.waiting import wait_for

DEFAULT_DEADLINE = 30.0




def client_env(emu_env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A full environment for a subprocess that talks to the stand-in."""
    env = dict(os.environ if base is None else base)
    for key in (
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_ID",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
    ):
        env.pop(key, None)
    env.update(emu_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def started_emulator(tmp_path: Path, name: str = "emu", **options: Any) -> Iterator[Emulator]:
    """An in-process stand-in with its workspace and CA under ``tmp_path``."""
    options.setdefault("db", str(tmp_path / f"{name}.db"))
    options.setdefault("ca_dir", str(tmp_path / f"{name}-ca"))
    if "faults" in options and isinstance(options["faults"], dict):
        options["faults"] = FaultPlan(**options["faults"])
    emu = Emulator(**options)
    emu.start()
    try:
        yield emu
    finally:
        emu.close()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A running in-process stand-in (no faults; change them with ``emulator.set_faults``)."""
    with started_emulator(tmp_path) as emu:
        yield emu


@pytest.fixture
def azure_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this process's Azure SDK and credentials at ``emulator``; returns the variables."""
    env = emulator.env()
    for key in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class EmulatorProcess:
    """``hal-logging emulator`` as a child process (for kill/restart scenarios).

    ``ca_dir`` and ``db`` persist across :meth:`restart`, and so do the ports,
    so a client keeps trusting and reaching it.
    """

    def __init__(self, tmp_path: Path, *args: str, name: str = "emuproc") -> None:
        self.tmp = tmp_path
        self.db = tmp_path / f"{name}.db"
        self.ca_dir = tmp_path / f"{name}-ca"
        self.env_file = tmp_path / f"{name}-env.json"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.log = tmp_path / f"{name}.log"

    def start(self, *extra: str) -> EmulatorProcess:
        self.env_file.unlink(missing_ok=True)
        ports: list[str] = []
        if self.env:
            ports = [
                "--port",
                self.env["AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"].rsplit(":", 1)[1],
                "--imds-port",
                self.env["AZURE_POD_IDENTITY_AUTHORITY_HOST"].rsplit(":", 1)[1],
            ]
        cmd = [
            sys.executable,
            "-m",
            "hal_logging.emulator.cli",
            "--db",
            str(self.db),
            "--ca-dir",
            str(self.ca_dir),
            "--env-out",
            str(self.env_file),
            *ports,
            *self.args,
            *extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(
            lambda: self.env_file.exists() or self.proc.poll() is not None,
            what="emulator to listen",
        )  # type: ignore[union-attr]
        if not self.env_file.exists():
            raise AssertionError(f"emulator exited: {self.log.read_text(errors='replace')}")
        self.env = {
            k: v
            for k, v in _json.loads(self.env_file.read_bytes()).items()
            if k != "HAL_EMULATOR_DB"
        }
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *extra: str) -> None:
        self.stop()
        self.start(*extra)

    def _admin(self, path: str, body: Any = None) -> Any:
        url = self.env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] + path
        data = None if body is None else _json.dumps(body)
        req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return _json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._admin("/_emulator/stats"))

    def set_faults(self, **changes: Any) -> None:
        self._admin("/_emulator/faults", changes)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def workspace_record_ids(db: Path) -> list[str | None]:
    """Every record id the stand-in stored (duplicates included), read with plain sqlite3."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return [
            r[0] for r in conn.execute('SELECT "_record_id" FROM "BenchmarkRuns_CL" ORDER BY rowid')
        ]


def request_sizes(db: Path) -> list[tuple[int, int, int]]:
    """(status, compressed, uncompressed) of every ingestion request the stand-in saw."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return list(
            conn.execute(
                'SELECT status, compressed_bytes, uncompressed_bytes FROM "_emulator_requests" ORDER BY id'
            )
        )
