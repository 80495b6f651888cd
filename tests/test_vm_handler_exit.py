"""A process whose handler's service hangs still exits, bounded by ``close_timeout``.

The sender sends in its own (daemon) thread: no worker thread of the delivery
engine is left for the interpreter to wait on at exit while a request hangs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from hal_logging.emulator import Emulator
from tests.azure_helpers import client_env, emulator  # noqa: F401
from tests.vm_helpers import silent_server
from tests.waiting import wait_for


def test_exit_is_bounded_when_the_service_hangs(
    emulator: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    spill = tmp_path / "spill.jsonl"
    with silent_server() as server:
        port = server.url.rsplit(":", 1)[1]
        script = textwrap.dedent(
            f"""
            import logging, sys
            from hal_logging.azure.handler import AzureMonitorHandler
            h = AzureMonitorHandler("https://127.0.0.1:{port}", "dcr-0", close_timeout=1,
                                    spill_path={str(spill)!r})
            log = logging.getLogger("script")
            log.addHandler(h)
            log.error("the sender takes this one and hangs")
            sys.stdin.readline()  # the test lets the script end once the sender hangs
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env=client_env(emulator.env()),
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: server.accepted, 30, "the sender to connect")
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        # A hung request is held for the engine's read timeout (10 s by default);
        # exit must not wait for it, only for close_timeout (1 s).
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("exit waited for the hung request, not for close_timeout") from None
    assert "the sender takes this one and hangs" in spill.read_text()
