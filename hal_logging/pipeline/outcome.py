"""How a forwarder run ended, as exit statuses a script can rely on.

Every exit status of ``hal-logging-forward`` is defined here, once, so the
CLI, the runner and any later source (a followed container, say) agree on
them. The values follow ``sysexits.h`` and the shell where one exists, because
those are what an orchestrator's script already knows how to read:

=====  ==========================  ==================================================
0      :data:`EXIT_OK`             every record read was delivered
1      :data:`EXIT_INPUT`          an input could not be read (the rest was shipped)
2      :data:`EXIT_USAGE`          a usage error: nothing was shipped; fix the flags
73     :data:`EXIT_DESTINATION`    the destination cannot be used (EX_CANTCREAT): the
                                   workspace cannot be opened or created, the sink
                                   cannot be built; nothing was shipped
75     :data:`EXIT_UNDELIVERED`    some records were not delivered (EX_TEMPFAIL): they
                                   are kept for a rerun (``where_kept``)
126    :data:`EXIT_CANNOT_EXECUTE` wrap mode: the command exists but cannot be executed
127    :data:`EXIT_NOT_FOUND`      wrap mode: the command was not found
=====  ==========================  ==================================================

A command's own status and the delivery outcome are two facts. The summary
JSON always carries both; ``--exit-status`` chooses which one the process's
status carries (:func:`exit_status`). The rule is written for "a command the
forwarder ran", not for a subprocess in particular, so a source that follows
a container the VM started can report its status the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

EXIT_OK: Final = 0
EXIT_INPUT: Final = 1
EXIT_USAGE: Final = 2
#: The destination cannot be used (sysexits EX_CANTCREAT): nothing was shipped.
EXIT_DESTINATION: Final = 73
#: Some records were not delivered (sysexits EX_TEMPFAIL): rerun later.
EXIT_UNDELIVERED: Final = 75
#: The command cannot be executed (a shell's 126).
EXIT_CANNOT_EXECUTE: Final = 126
#: The command was not found (a shell's 127).
EXIT_NOT_FOUND: Final = 127

#: ``--exit-status`` choices: see :func:`exit_status`.
EXIT_STATUS_POLICIES: Final = ("auto", "command", "delivery")

#: ``command_outcome`` values in the summary JSON.
COMMAND_EXITED: Final = "exited"
COMMAND_KILLED: Final = "killed"
COMMAND_NOT_FOUND: Final = "not-found"
COMMAND_CANNOT_EXECUTE: Final = "cannot-execute"


@dataclass
class Delivery:
    """The delivery outcome of a run: the ``delivery`` object of the summary JSON.

    ``status`` is what the run's exit status is when it carries delivery:
    0 complete, 73 the destination could not be used, 75 rows kept for a rerun,
    1 an input could not be read.
    """

    complete: bool = True
    status: int = EXIT_OK
    undelivered: int = 0
    where_kept: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "status": self.status,
            "undelivered": self.undelivered,
            "where_kept": list(self.where_kept),
        }


def exit_status(policy: str, command_status: int | None, delivery: Delivery) -> int:
    """The process's exit status under ``--exit-status POLICY``.

    * ``auto`` (default): the command's status when delivery is complete, else
      the delivery status (75: losing rows is the louder problem);
    * ``command``: the command's status whatever delivery did;
    * ``delivery``: the delivery status whatever the command returned.

    Without a command (files, a followed file, or a command that never ran
    because the destination could not be used) the delivery status is the
    answer under every policy.
    """
    if command_status is None or policy == "delivery":
        return delivery.status
    if policy == "command":
        return command_status
    return command_status if delivery.complete else delivery.status


def where_kept(
    mode: str,
    *,
    prog: str,
    spool: tuple[str, int] | None = None,
    raw_log: str | None = None,
    container: str | None = None,
    container_checkpoint: str | None = None,
    checkpoints: Mapping[str, str] | None = None,
) -> list[str]:
    """Where the rows a run did not deliver are kept, one line each, saying how to ship them.

    ``mode`` is the source's (``InputsConfig.mode``). Wrap mode keeps them in
    its ``spool`` (path, rows) and the command's ``raw_log``; a container in its
    own log, from its checkpoint; files (and a followed file) in the input
    from its checkpoint (``checkpoints``: input path -> checkpoint path).
    """
    kept: list[str] = []
    if mode == "wrap":
        if spool is not None and spool[1]:
            path, rows = spool
            kept.append(
                f"{path} ({rows} rows as wire lines): ship it later with "
                f"`{prog} --resend {path}` (keeps their record ids and context)"
            )
        if raw_log:
            kept.append(f"{raw_log} (the command's raw output)")
    elif mode == "container":
        kept.append(
            f"the log of container {container}"
            + (f" from its checkpoint {container_checkpoint}" if container_checkpoint else "")
            + ": rerun the same command to resume"
        )
    else:
        for path, checkpoint in (checkpoints or {}).items():
            kept.append(
                f"{path} from its checkpoint {checkpoint}: rerun the same command to resume"
            )
        if not checkpoints:
            kept.append("the input files (no checkpoint: a rerun sends them again)")
    return kept


def delivery_outcome(
    *, incomplete: bool, unreadable: bool, undelivered: int, kept: list[str]
) -> Delivery:
    """The delivery outcome: rows kept for a rerun (75) before an unreadable input (1).

    ``kept`` is the list :func:`where_kept` made (shared, not copied: the
    summary's ``where_kept`` is the same list).
    """
    if incomplete:
        return Delivery(
            complete=False, status=EXIT_UNDELIVERED, undelivered=undelivered, where_kept=kept
        )
    if unreadable:
        return Delivery(complete=False, status=EXIT_INPUT)
    return Delivery()


__all__ = [
    "COMMAND_CANNOT_EXECUTE",
    "COMMAND_EXITED",
    "COMMAND_KILLED",
    "COMMAND_NOT_FOUND",
    "EXIT_CANNOT_EXECUTE",
    "EXIT_DESTINATION",
    "EXIT_INPUT",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STATUS_POLICIES",
    "EXIT_UNDELIVERED",
    "EXIT_USAGE",
    "Delivery",
    "delivery_outcome",
    "exit_status",
    "where_kept",
]
