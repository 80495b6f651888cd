"""What stop signals do to a run (pipeline.signals): stop, then end the drain; wrap mode passes them on."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace

from hal_logging.pipeline.signals import StopSignals
from hal_logging.pipeline.sinks.null import NullSink


class _Command:
    """Wrap mode's command as the handlers see it: it receives the signals passed on."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.received: list[int] = []

    def forward_signal(self, signum: int) -> None:
        self.received.append(signum)


def test_first_signal_stops_reading_second_ends_the_drain() -> None:
    stop, abort, sink = threading.Event(), threading.Event(), NullSink()
    stats = SimpleNamespace(interrupted=None)
    handlers = StopSignals(stop=stop, abort=abort, sink=sink, stats=stats)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    handlers.install()
    try:
        assert signal.getsignal(signal.SIGTERM) == handlers.on_signal
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, between bytecodes
        assert stop.is_set() and not abort.is_set()
        assert stats.interrupted == "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)
        assert abort.is_set() and sink.deadline == 0.0
        assert stats.interrupted == "SIGTERM"  # the first one is the one recorded
    finally:
        handlers.restore()
    assert {s: signal.getsignal(s) for s in before} == before


def test_wrap_mode_passes_signals_on_and_waits_for_the_command() -> None:
    stop, abort, sink = threading.Event(), threading.Event(), NullSink()
    command = _Command()
    handlers = StopSignals(
        stop=stop, abort=abort, sink=sink, stats=SimpleNamespace(interrupted=None), command=command
    )
    handlers.install()
    try:
        assert signal.getsignal(signal.SIGTERM) == handlers.on_signal
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert command.received == [signal.SIGTERM, signal.SIGTERM]
        assert not stop.is_set() and not abort.is_set()  # the run ends when the command does
        command.returncode = 143
        os.kill(os.getpid(), signal.SIGINT)  # the command is gone: stop waiting for the drain
        assert abort.is_set() and sink.deadline == 0.0
    finally:
        handlers.restore()
