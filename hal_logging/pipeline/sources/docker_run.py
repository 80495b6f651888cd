"""Wrap mode around ``docker run``: what the forwarder learns from the command line.

When the wrapped command is ``docker run`` (or ``docker container run``), killing
the command is not enough to stop the work: the ``docker`` process is only a
client, the container lives in the daemon. A client SIGKILLed at the end of
``--stop-timeout`` would leave the container running, printing to nobody. So
the forwarder adds ``--cidfile FILE`` right after ``run`` (unless the user gave
one: then it reads theirs), learns the container id from it once the daemon
has created the container, and on escalation stops the container through the
daemon (``docker stop``, then ``docker kill``), using the same global options
(``-H``, ``--context``, ``--config``...) so that it talks to the same daemon.

``-t``/``--tty`` matters too: a pseudo-terminal merges the container's stdout
and stderr into one stream, so the forwarder tags those rows ``unknown``
rather than pretending they all came from stdout.

Only the docker CLI is used (no SDK): it is what the command already runs, it
needs no extra package, and the global options above keep their meaning.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

#: ``docker`` global options that take a value (``docker -H unix:///x run ...``).
_GLOBAL_VALUE = frozenset(
    {
        "-H",
        "--host",
        "-c",
        "--context",
        "--config",
        "-l",
        "--log-level",
        "--tlscacert",
        "--tlscert",
        "--tlskey",
    }
)
#: ``docker run`` long options that take no value (everything else takes one).
_RUN_BOOL_LONG = frozenset(
    {
        "--detach",
        "--interactive",
        "--tty",
        "--rm",
        "--init",
        "--privileged",
        "--publish-all",
        "--read-only",
        "--sig-proxy",
        "--no-healthcheck",
        "--oom-kill-disable",
        "--help",
        "--disable-content-trust",
        "--quiet",
        "--use-api-socket",
    }
)
#: ``docker run`` short options that take no value (combinable: ``-it``, ``-dit``).
_RUN_BOOL_SHORT = frozenset("ditPq")
#: Label the forwarder puts on the container it starts (value: its invocation id).
INVOCATION_LABEL = "hal-logging.forward-invocation"
#: How long one call of the docker CLI may take when stopping or inspecting.
CLI_TIMEOUT = 15.0
#: ``docker inspect`` at the end of every wrapped ``docker run``: short, it only adds facts.
INSPECT_TIMEOUT = 5.0


@dataclass
class DockerRun:
    """What the forwarder knows about a wrapped ``docker run``."""

    prefix: list[str]  # ``docker`` and its global options: the way to reach the same daemon
    run_index: int  # index of ``run`` in argv
    tty: bool = False
    detach: bool = False
    cidfile: str | None = None  # the user's own --cidfile, if any

    def with_options(self, argv: list[str], *options: str) -> list[str]:
        """``argv`` with ``options`` right after ``run`` (before the image)."""
        i = self.run_index + 1
        return [*argv[:i], *options, *argv[i:]]

    def with_cidfile(self, argv: list[str], path: str) -> list[str]:
        """``argv`` with ``--cidfile path`` right after ``run``."""
        return self.with_options(argv, "--cidfile", path)


def _bool_value(text: str) -> bool:
    return text.strip().lower() not in ("false", "0", "f", "no")


def _set_flag(run: DockerRun, option: str, on: bool) -> None:
    """Notes ``-t``/``--tty`` and ``-d``/``--detach`` (long form or a letter of a short group)."""
    if option in ("--tty", "t"):
        run.tty = on
    elif option in ("--detach", "d"):
        run.detach = on


def parse_docker_run(argv: list[str]) -> DockerRun | None:
    """A :class:`DockerRun` when ``argv`` runs ``docker run``/``docker container run``."""
    if not argv or os.path.basename(argv[0]) != "docker":
        return None
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in _GLOBAL_VALUE:
            i += 2
            continue
        i += 1
    prefix = list(argv[:i])  # docker and its global options
    if i < len(argv) and argv[i] == "container":
        i += 1
    if i >= len(argv) or argv[i] != "run":
        return None
    run = DockerRun(prefix=prefix, run_index=i)
    j = i + 1
    while j < len(argv):
        a = argv[j]
        if a == "--" or not a.startswith("-") or a == "-":
            break  # the image: what follows is the container's own command
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            if name in _RUN_BOOL_LONG:
                on = _bool_value(value) if eq else True
                _set_flag(run, name, on)
                j += 1
                continue
            if not eq:
                value = argv[j + 1] if j + 1 < len(argv) else ""
                j += 1
            if name == "--cidfile":
                run.cidfile = value
            j += 1
            continue
        # short options, possibly combined: -it, -e NAME=V, -eNAME=V, -t=false is not docker's
        letters = a[1:]
        k = 0
        while k < len(letters):
            c = letters[k]
            if c in _RUN_BOOL_SHORT:
                _set_flag(run, c, True)
                k += 1
                continue
            if k == len(letters) - 1:  # the value is the next argument
                j += 1
            break
        j += 1
    return run


def find_labelled(prefix: list[str], label: str) -> list[str]:
    """Ids of the containers carrying ``label`` (``NAME=VALUE``), running or not.

    The forwarder labels the container it starts with its invocation id: if it must
    stop the container before the docker client wrote the ``--cidfile`` (a signal
    during creation), the label still finds it.
    """
    r = _cli(prefix, "ps", "-aq", "--no-trunc", "--filter", f"label={label}")
    if r is None or r.returncode != 0:
        return []
    return r.stdout.split()


def read_cid(path: str) -> str | None:
    """The container id the docker client wrote to ``path``, or None (not yet, or never)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            cid = fh.read().strip()
    except OSError:
        return None
    return cid if len(cid) >= 12 and cid.isalnum() else None


def _cli(
    prefix: list[str], *args: str, timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            [*prefix, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def stop_container(prefix: list[str], cid: str, grace: float = 0.0) -> bool:
    """Stop the container through the daemon (SIGKILL after ``grace`` seconds).

    ``docker stop`` returns once the container has stopped; ``docker kill`` is the
    fallback when stop fails for another reason than "already gone". True when the
    daemon confirmed the container is not running (stopped, or no such container).
    """
    r = _cli(prefix, "stop", "-t", str(max(0, int(grace))), cid, timeout=CLI_TIMEOUT + grace)
    if r is None:
        return False  # the daemon does not answer: a kill would not be heard either
    if r.returncode == 0 or "No such container" in r.stderr:
        return True
    k = _cli(prefix, "kill", cid)
    return k is not None and (k.returncode == 0 or "is not running" in k.stderr)


def container_state(prefix: list[str], cid: str) -> tuple[bool, bool, int] | None:
    """(running, oom_killed, exit code) from ``docker inspect``, or None (gone, no daemon)."""
    r = _cli(
        prefix,
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.OOMKilled}} {{.State.ExitCode}}",
        cid,
        timeout=INSPECT_TIMEOUT,
    )
    if r is None or r.returncode != 0:
        return None
    parts = r.stdout.split()
    if len(parts) != 3:
        return None
    try:
        code = int(parts[2])
    except ValueError:
        return None
    return parts[0] == "true", parts[1] == "true", code


def container_status(prefix: list[str], cid: str) -> str | None:
    """The container's status (created, running, exited...), or None (gone, no daemon)."""
    r = _cli(prefix, "inspect", "-f", "{{.State.Status}}", cid, timeout=INSPECT_TIMEOUT)
    if r is None or r.returncode != 0:
        return None
    return r.stdout.strip() or None


def remove_container(prefix: list[str], cid: str) -> bool:
    """``docker rm -f``: for a container that was created but never started, so that a
    start request still in flight when its client died cannot run it after we left."""
    r = _cli(prefix, "rm", "-f", cid)
    return r is not None and (r.returncode == 0 or "No such container" in r.stderr)


__all__ = [
    "INVOCATION_LABEL",
    "DockerRun",
    "container_state",
    "container_status",
    "find_labelled",
    "parse_docker_run",
    "read_cid",
    "remove_container",
    "stop_container",
]
