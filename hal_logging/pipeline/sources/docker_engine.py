"""The few Docker Engine API calls ``--container`` needs, through docker-py.

docker-py (the ``docker`` package, extra ``hal-logging[docker]``) is imported
here only, and only when this module's functions run, so ``import
hal_logging`` and every other mode never load it.

Why not ``container.logs(stream=True)``: docker-py's log stream drops the
stream id of each frame (stdout and stderr come out merged). The Engine API
sends, for a container without a terminal, one frame per log message with an
8-byte header whose first byte says the stream; :func:`log_frames` reads those
frames itself from the same HTTP response, so stdout and stderr stay apart.
With ``timestamps=1`` every message begins with its RFC 3339 time (nine
fraction digits) and a space; a line the daemon split (over 16 KB) comes as
several messages with the same time, only the last ending in ``\\n``.

Errors a user can fix become :class:`ContainerError` with one line saying what
to do, and the exit status the forwarder uses for it.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: Exit statuses of the errors below (the forwarder's: 1 input unreadable, 2 usage).
EXIT_INPUT = 1
EXIT_USAGE = 2

INSTALL_HINT = "pip install 'hal-logging[docker]'"
_HEADER = struct.Struct(">BxxxL")
#: Size of the pieces the daemon cuts a long line into (all but the last).
PIECE_BYTES = 16 * 1024
_STREAMS = {1: "stdout", 2: "stderr"}


class ContainerError(Exception):
    """The container cannot be followed; ``str()`` is the one-line message."""

    def __init__(self, message: str, exit_status: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass
class ContainerInfo:
    """What ``docker inspect`` says about the container, as far as we use it."""

    id: str
    name: str
    driver: str
    log_path: str
    tty: bool
    status: str  # created | running | paused | restarting | exited | dead | removing
    env: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    oom_killed: bool | None = None
    log_options: dict[str, str] = field(default_factory=dict)  # --log-opt NAME=VALUE
    image: str = ""
    #: The image's own environment (None: unknown, e.g. the image was removed).
    image_env: dict[str, str] | None = None

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


def _cause(exc: BaseException) -> str:
    """The innermost OS-level reason in an exception chain, short."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    found: str | None = None
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            found = cur.strerror
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, OSError) and arg.strerror:
                found = arg.strerror
            elif isinstance(arg, BaseException):
                inner = _cause(arg)
                if inner:
                    found = inner
        cur = cur.__cause__ or cur.__context__
    if found:
        return found
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _daemon_address(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> Any:
    """A docker-py client from the environment (``DOCKER_HOST`` etc.), checked to answer."""
    try:
        import docker
    except ImportError as exc:
        raise ContainerError(
            f"--container needs the Docker Engine API client: {INSTALL_HINT}", EXIT_USAGE
        ) from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker.errors.DockerException, requests' errors, OSError
        raise ContainerError(
            f"cannot reach the Docker daemon at {_daemon_address()}: {_cause(exc)} "
            "(is dockerd running, and is DOCKER_HOST right?)"
        ) from exc
    return client


def inspect(client: Any, name_or_id: str) -> ContainerInfo:
    """``docker inspect NAME_OR_ID``; a missing container is a :class:`ContainerError`."""
    import docker.errors

    try:
        attrs = client.api.inspect_container(name_or_id)
    except docker.errors.NotFound as exc:
        raise ContainerError(
            f"no such container: {name_or_id} (it may be gone: a container run with --rm is "
            "removed when it exits; `docker ps -a` lists the ones that exist)"
        ) from exc
    except Exception as exc:
        raise ContainerError(
            f"cannot inspect container {name_or_id} through the Docker daemon at "
            f"{_daemon_address()}: {_cause(exc)}"
        ) from exc
    info = info_from_attrs(attrs)
    if info.image:
        try:
            image = client.api.inspect_image(info.image)
        except Exception:  # removed since, or not inspectable: left unknown
            pass
        else:
            info.image_env = _env_dict((image.get("Config") or {}).get("Env"))
    return info


def _env_dict(items: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items or ():
        name, eq, value = str(item).partition("=")
        if name and eq:
            env[name] = value
    return env


def info_from_attrs(attrs: Mapping[str, Any]) -> ContainerInfo:
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    host = attrs.get("HostConfig") or {}
    env = _env_dict(config.get("Env"))
    exit_code = state.get("ExitCode")
    return ContainerInfo(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        driver=str((host.get("LogConfig") or {}).get("Type") or ""),
        log_path=str(attrs.get("LogPath") or ""),
        tty=bool(config.get("Tty")),
        status=str(state.get("Status") or ""),
        env=env,
        started_at=str(state.get("StartedAt") or ""),
        finished_at=str(state.get("FinishedAt") or ""),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        oom_killed=state.get("OOMKilled") if isinstance(state.get("OOMKilled"), bool) else None,
        image=str(attrs.get("Image") or ""),
        log_options={
            str(k): str(v) for k, v in ((host.get("LogConfig") or {}).get("Config") or {}).items()
        },
    )


def wait(client: Any, container_id: str) -> int | None:
    """Block until the container is not running; its exit code (None if unknown).

    No timeout: a task can run for hours (docker-py's default would give up
    after a minute).
    """
    res = client.api.wait(container_id, timeout=None, condition="not-running")
    code = res.get("StatusCode") if isinstance(res, dict) else None
    return code if isinstance(code, int) else None


def open_logs(client: Any, container_id: str, *, since: str | None = None) -> Any:
    """The Engine API's followed log stream (an HTTP response, body not yet read)."""
    api = client.api
    params: dict[str, Any] = {
        "stdout": 1,
        "stderr": 1,
        "timestamps": 1,
        "follow": 1,
        "tail": "all",
    }
    if since:
        params["since"] = since
    res = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
    api._raise_for_status(res)
    sock = api._get_raw_response_socket(res)
    api._disable_socket_timeout(sock)  # a quiet container is not a dead connection
    return res


@dataclass(slots=True)
class Frame:
    """One log message: stream, the daemon's timestamp (RFC 3339) and the text bytes."""

    stream: str
    time: str
    data: bytes


def _split_ts(payload: bytes) -> tuple[str, bytes]:
    sp = payload.find(b" ", 0, 40)
    if sp < 20:
        return "", payload
    return payload[:sp].decode("ascii", "replace"), payload[sp + 1 :]


def log_frames(res: Any, *, tty: bool) -> Iterator[Frame]:
    """Messages of a log response, in order, until the daemon ends it (container exit).

    Without a terminal: multiplexed frames (one message each, stream in the
    header). With one (``docker run -t``): a single raw stream of
    ``TIME TEXT\\n`` lines, all stdout; a message the daemon split in pieces
    then shows the later pieces' times inside the text (rare: 16 KB lines).
    """
    raw = res.raw
    if not tty:
        while True:
            header = raw.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            sid, n = _HEADER.unpack(header)
            if not n:
                continue
            payload = raw.read(n)
            if len(payload) < n:
                return
            ts, text = _split_ts(payload)
            if not text.endswith(b"\n") and len(text) < PIECE_BYTES:
                # The last piece of a split line: some daemons (20.10 with the local
                # driver, checked) send it without its newline. Pieces before it are
                # exactly PIECE_BYTES long, so a shorter one ends the line.
                text += b"\n"
            yield Frame(_STREAMS.get(sid, "unknown"), ts, text)
    yield from _tty_frames(getattr(raw, "read1", None) or (lambda n: raw.read(1)))


#: A ``timestamps=1`` prefix: RFC 3339 with nine fraction digits, and a space.
_TS_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d) ")


def _tty_frames(read: Callable[[int], bytes]) -> Iterator[Frame]:
    """Messages of a terminal's raw log stream: ``TIME TEXT``, one after the other.

    A message ends at its newline, or after PIECE_BYTES of text (a piece of a
    split line). The last piece of a split line may come without its newline
    (20.10 with the local driver): then the next message's time shows up inside
    it, and is taken as the boundary (looked for only in such a last piece).
    """
    buf = b""
    eof = False
    continuing = False

    def fill(need: int) -> bool:
        nonlocal buf, eof
        while len(buf) < need and not eof:
            data = read(65536)
            if not data:
                eof = True
            buf += data
        return len(buf) >= need

    while True:
        if not fill(1):
            return
        m = _TS_RE.match(buf)
        if m is None and not eof and len(buf) < 40 and b"\n" not in buf:
            fill(40)
            m = _TS_RE.match(buf)
        start = m.end() if m else 0
        ts = buf[: start - 1].decode("ascii") if m else ""
        while True:
            nl = buf.find(b"\n", start, start + PIECE_BYTES)
            if nl >= 0 or len(buf) - start >= PIECE_BYTES or eof:
                break
            fill(len(buf) + 1)
        if nl >= 0:
            end = nl + 1
            if continuing:
                inner = _TS_RE.search(buf, start, nl)
                if inner is not None:
                    end = inner.start()
            text = buf[start:end]
            if not text.endswith(b"\n"):
                text += b"\n"
            continuing = False
        elif len(buf) - start >= PIECE_BYTES:
            end = start + PIECE_BYTES
            text = buf[start:end]
            continuing = True
        else:
            end = len(buf)
            text = buf[start:end]
        buf = buf[end:]
        yield Frame("stdout", ts, text)


def since_param(rfc3339: str) -> str | None:
    """The API's ``since`` (``SECONDS.NANOSECONDS``) for a daemon timestamp, exactly."""
    try:
        head, _, rest = rfc3339.rstrip("Z").partition(".")
        frac = "".join(ch for ch in rest if ch.isdigit())[:9].ljust(9, "0")
        when = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return f"{int(when.timestamp())}.{frac}"


def daemon_time(value: str) -> datetime | None:
    """A daemon timestamp (RFC 3339, up to nine fraction digits) as a UTC datetime;
    None for "0001-01-01T00:00:00Z" (never started, not finished) or anything odd."""
    head, _, rest = value.rstrip("Z").partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())[:6].ljust(6, "0")
    try:
        base = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    if base.year < 2000:
        return None
    return base.replace(microsecond=int(frac))


def run_seconds(started: str, finished: str) -> float | None:
    """Seconds between two daemon timestamps (a container's run time)."""
    a, b = daemon_time(started), daemon_time(finished)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())
