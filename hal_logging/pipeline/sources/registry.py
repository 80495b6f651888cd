"""Which source a run reads: :data:`SOURCES`, by the mode its inputs ask for.

``InputsConfig.mode`` says which ("files", "follow", "wrap", "container");
each entry builds its source from the run's config and what the assembly has
opened for it (:class:`SourceSetup`: checkpoint stores, the stop event, the
attached container). Each reads its settings from ``config.inputs``. Modules are imported only when their mode is chosen, so
files mode never imports the Docker SDK. A new source is a module in this
package and one entry here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hal_logging.pipeline.checkpoint import CheckpointStore
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.outcome import EXIT_USAGE
from hal_logging.pipeline.sources import Source


class SourceSetupError(Exception):
    """The source cannot be set up (nothing was started); ``status`` is the exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SourceSetup:
    """What the assembly opened before the source: the source's share of it."""

    stop: threading.Event
    #: One line about the source's progress (a stop escalated, a file rotated).
    notify: Callable[[str], None]
    #: The trusted context, and the tag checkpoints are written under.
    trusted: Mapping[str, str] = field(default_factory=dict)
    context_tag: str = ""
    environ: Mapping[str, str] | None = None
    stores_by_input: Mapping[str, CheckpointStore] = field(default_factory=dict)
    #: --container: (Docker client, ContainerInfo) from ``attach``, and its checkpoint.
    container: Any = None
    container_store: CheckpointStore | None = None


def _wrap(config: ForwardConfig, setup: SourceSetup) -> Source:
    from hal_logging.pipeline.sources.command import CommandSource, RedactedLog

    inputs = config.inputs
    redacted_log: RedactedLog | None = None
    if inputs.raw_log_redacted:
        from hal_logging.pipeline.filters import make_redact_filter

        # Its own redactor (same values and shapes): the pipe readers call it.
        redactor = make_redact_filter(config.filters, setup.trusted, setup.environ).redactor
        try:
            redacted_log = RedactedLog(inputs.raw_log_redacted, redactor.redact_text)
        except OSError as exc:
            raise SourceSetupError(
                f"cannot open --raw-log-redacted {inputs.raw_log_redacted}: "
                f"{exc.strerror}; choose a writable path"
            ) from exc
    source = CommandSource(
        list(inputs.command), inputs.raw_log, inputs.stop_timeout, redacted_log=redacted_log
    )
    source.notify = setup.notify
    return source


def _container(config: ForwardConfig, setup: SourceSetup) -> Source:
    from hal_logging.pipeline.sources.container import ContainerSource

    client, info = setup.container
    return ContainerSource(client, info, setup.container_store, setup.stop, setup.notify)


def _follow(config: ForwardConfig, setup: SourceSetup) -> Source:
    from hal_logging.pipeline.sources.tail import TailSource

    inputs = config.inputs
    path = inputs.files[0]
    return TailSource(
        path,
        setup.stores_by_input.get(path),
        setup.stop,
        stream=inputs.input_stream,
        until_pid=inputs.until_pid,
        idle_exit=inputs.idle_exit,
        notify=setup.notify,
        context_tag=setup.context_tag,
    )


def _files(config: ForwardConfig, setup: SourceSetup) -> Source:
    from hal_logging.pipeline.sources.file import FileSource

    inputs = config.inputs
    return FileSource(
        list(inputs.files),
        setup.stores_by_input.get,
        setup.stop,
        stream=inputs.input_stream,
        notify=setup.notify,
        context_tag=setup.context_tag,
    )


#: Every source by its mode (``InputsConfig.mode``).
SOURCES: dict[str, Callable[[ForwardConfig, SourceSetup], Source]] = {
    "wrap": _wrap,
    "container": _container,
    "follow": _follow,
    "files": _files,
}


def make_source(config: ForwardConfig, setup: SourceSetup) -> Source:
    """The source ``config`` asks for (may raise :class:`SourceSetupError`)."""
    return SOURCES[config.inputs.mode](config, setup)


__all__ = ["SOURCES", "SourceSetup", "SourceSetupError", "make_source"]
