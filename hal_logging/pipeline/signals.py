"""What SIGINT, SIGTERM (and in wrap mode SIGHUP) do to a forwarder run.

A stop signal must never lose a row: the first one asks the run to stop
reading and drain what it holds (bounded by ``--drain-timeout``); a second
one gives up waiting for the drain (whatever is not confirmed is counted as
undelivered and kept for a rerun). In wrap mode the signal belongs to the
command: it is passed on, and the run ends when the command does; a signal
after the command has exited, or a third one, ends the drain at once.

The handlers are installed only for the run and the previous ones restored
after it, so a program that embeds the forwarder keeps its own.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Protocol

from hal_logging.pipeline.model import Sink


class PassesSignals(Protocol):
    """Wrap mode's command: it gets the signal; ``returncode`` once it has exited."""

    returncode: int | None

    def forward_signal(self, signum: int) -> None: ...


class Interruptible(Protocol):
    """The run's stats: the first signal's name is recorded there."""

    interrupted: str | None


class StopSignals:
    """The run's stop-signal handlers (:meth:`install`, then :meth:`restore`)."""

    def __init__(
        self,
        *,
        stop: threading.Event,
        abort: threading.Event,
        sink: Sink,
        stats: Interruptible,
        command: PassesSignals | None = None,
    ) -> None:
        self.stop = stop
        self.abort = abort
        self.sink = sink
        self.stats = stats
        self.command = command
        self.seen: list[int] = []
        self._old: dict[signal.Signals, Any] = {}

    def _end_drain(self) -> None:
        self.abort.set()
        self.sink.deadline = 0.0

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.seen.append(signum)
        if self.command is not None:
            self.command.forward_signal(signum)
            if self.command.returncode is not None or len(self.seen) > 2:
                self._end_drain()
            return
        if self.stats.interrupted is None:
            self.stats.interrupted = signal.Signals(signum).name
        if self.stop.is_set():  # second signal: stop waiting for the drain
            self._end_drain()
        self.stop.set()

    def install(self) -> None:
        stop_signals = [signal.SIGINT, signal.SIGTERM]
        if self.command is not None and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
            # CMD runs in its own session, so a closed terminal's SIGHUP reaches only us:
            # pass it on like SIGTERM. (Not under nohup, which ignores it for both of us.)
            stop_signals.append(signal.SIGHUP)
        for sig in stop_signals:
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[sig] = signal.signal(sig, self.on_signal)

    def restore(self) -> None:
        for sig, h in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, h)
        self._old.clear()


__all__ = ["PassesSignals", "StopSignals"]
