"""Waiting on a condition with a deadline (docs/testing.md: no test sleeps to wait for something)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    cond: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.02
) -> T:
    """Poll ``cond`` until it returns something truthy (returned), or fail naming ``what``.

    The short sleep is the polling interval of a deadline-bounded wait, not a
    guess at how long something takes.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float, sig: int = signal.SIGTERM) -> None:
    """Ask a running ``proc`` to end with ``sig``; after ``timeout`` s, kill it (and wait
    ``timeout`` s more)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
