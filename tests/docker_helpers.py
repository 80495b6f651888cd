"""A real Docker daemon for the tests (docs/testing.md, "A real Docker daemon").

These machines have a daemon (started loopback-only by ``scripts/services``)
but no registry. The test image is a tarball of empty folders made with
``docker import``; Python runs inside it from the host's own files,
bind-mounted read-only at the same paths: ``/usr`` (and ``/usr/lib`` as
``/lib``, ``/usr/lib64`` as ``/lib64``, ``/usr/bin`` as ``/bin``), the
interpreter's prefix, the virtualenv and the checkout. So the container runs
the very ``hal_logging`` under test.

Every container:
- runs with ``--network none`` (nothing leaves the container) and
  ``--pull never`` (a missing image must not send the daemon to a registry);
- carries the label ``hal-logging-test`` so that the session removes whatever
  a test left behind, even after a failure.

Without a daemon the tests that use :func:`docker_kit` skip with one line;
with ``HAL_LOGGING_REQUIRE_DOCKER=1`` (set by ``.ci/run``) they fail instead,
because in CI the daemon must be there.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABEL = "hal-logging-test"
#: This test session's own label value: the session removes what it started, not
#: the containers of another suite running beside it on the same daemon.
SESSION = f"{os.getpid()}-{os.urandom(4).hex()}"
REQUIRED = os.environ.get("HAL_LOGGING_REQUIRE_DOCKER") == "1"
_FOLDERS = ("tmp", "proc", "sys", "dev", "etc", "usr", "lib", "lib64", "bin", "root", "home/agent", "work")


def daemon_problem() -> str | None:
    """Why the Docker tests cannot run here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (scripts/services installs docker.io)"
    try:
        r = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["no answer"])[0]
        return f"no Docker daemon ({first}); start one with scripts/services"
    return None


def _base_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in _FOLDERS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
    return buf.getvalue()


def ensure_image() -> str:
    """Import the empty-folders base image once (its tag names its content)."""
    data = _base_tar()
    tag = f"hal-logging-test-base:{hashlib.sha256(data).hexdigest()[:12]}"
    have = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    if have.returncode != 0:
        subprocess.run(["docker", "import", "-", tag], input=data, check=True, capture_output=True)
    return tag


def _mounts(extra: Sequence[str | Path]) -> list[str]:
    pairs: list[tuple[str, str]] = [
        ("/usr", "/usr"),
        ("/usr/lib", "/lib"),
        ("/usr/bin", "/bin"),
    ]
    if os.path.isdir("/usr/lib64"):
        pairs.append(("/usr/lib64", "/lib64"))
    seen = {dst for _, dst in pairs}
    for p in (sys.base_prefix, sys.prefix, str(ROOT), *map(str, extra)):
        real = os.path.realpath(p)
        if real.startswith("/usr/") or real == "/usr" or real in seen:
            continue
        seen.add(real)
        pairs.append((real, real))
    out: list[str] = []
    for src, dst in pairs:
        out += ["-v", f"{src}:{dst}:ro"]
    return out


@dataclass
class DockerKit:
    """What a test needs to start real containers that run this checkout's Python."""

    image: str
    python: str = field(default_factory=lambda: sys.executable)

    def run_argv(
        self,
        program: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        tty: bool = False,
        interactive: bool = False,
        name: str | None = None,
        detach: bool = False,
        rm: bool = False,
        init: bool = False,
        mounts: Sequence[str | Path] = (),
        writable: Sequence[str | Path] = (),
        extra: Sequence[str] = (),
    ) -> list[str]:
        """``docker run ...`` argv for ``program`` (argv inside the container).

        ``mounts`` are extra host paths mounted read-only at the same path;
        ``writable`` ones read-write. ``env`` becomes ``-e NAME=VALUE`` flags.
        """
        label = f"{LABEL}={SESSION}"
        argv = ["docker", "run", "--network", "none", "--pull", "never", "--label", label]
        if rm:
            argv.append("--rm")
        if detach:
            argv.append("-d")
        if tty:
            argv.append("-t")
        if interactive:
            argv.append("-i")
        if init:
            argv.append("--init")
        if name:
            argv += ["--name", name]
        for k, v in (env or {}).items():
            argv += ["-e", f"{k}={v}"]
        argv += _mounts(mounts)
        for p in writable:
            real = os.path.realpath(str(p))
            argv += ["-v", f"{real}:{real}"]
        argv += ["-e", "PYTHONDONTWRITEBYTECODE=1", *extra, self.image, *program]
        return argv

    def python_argv(self, *args: str | Path, **kw: object) -> list[str]:
        """``docker run ... IMAGE python ARGS`` with this test run's interpreter."""
        return self.run_argv([self.python, *map(str, args)], **kw)  # type: ignore[arg-type]

    @staticmethod
    def inspect(container: str, fmt: str) -> str:
        r = subprocess.run(
            ["docker", "inspect", "-f", fmt, container], capture_output=True, text=True, check=True
        )
        return r.stdout.strip()

    @staticmethod
    def remove(*containers: str) -> None:
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)

    @staticmethod
    def _ours(ps_flags: str) -> list[str]:
        """Ids ``docker ps ps_flags`` lists among this suite's containers."""
        r = subprocess.run(
            ["docker", "ps", ps_flags, "--filter", f"label={LABEL}={SESSION}"],
            capture_output=True,
            text=True,
        )
        return r.stdout.split()

    @staticmethod
    def leftovers() -> list[str]:
        """Ids of this suite's containers that still exist (running or not)."""
        return DockerKit._ours("-aq")

    @staticmethod
    def running() -> list[str]:
        return DockerKit._ours("-q")


def bench_kit() -> DockerKit | None:
    """A benchmark's kit, or None after printing why the benchmark is skipped."""
    problem = daemon_problem()
    if problem is not None:
        print(f"skipped: {problem}")
        return None
    return DockerKit(ensure_image())
