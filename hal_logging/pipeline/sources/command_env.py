"""The environment a wrapped ``docker run`` gives its container: ``-e``/``--env``
values and ``--env-file`` files, read the way docker reads them.

The VM side chose these values, so they count as trusted context (``HAL_*``)
and they are redacted from every row (an API key passed with ``-e`` must never
reach a sink). The forwarder reads them from the command line of wrap mode,
and a journal's replay from the argv the journal recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _set(out: dict[str, str], name: str, eq: str, value: str, environ: Mapping[str, str]) -> None:
    """``NAME=VALUE`` sets NAME; a bare ``NAME`` passes the variable through from
    ``environ`` when set (docker's rule for ``-e`` and env-files alike)."""
    if eq:
        out[name] = value
    elif name in environ:
        out[name] = environ[name]


def read_env_file(path: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of a docker ``--env-file``, read the way docker reads it.

    One ``NAME=VALUE`` per line, the value verbatim (no quotes removed, no
    expansion); lines starting with ``#`` and blank lines are skipped; a bare
    ``NAME`` passes the variable through from ``environ`` when set. Raises
    OSError when the file cannot be read.
    """
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n").lstrip()
            if not line or line.startswith("#"):
                continue
            name, eq, value = line.partition("=")
            name = name.strip()
            if not name or not name.replace("_", "a").replace(".", "a").isalnum():
                continue
            _set(out, name, eq, value, environ)
    return out


def parse_command_env(
    command: Sequence[str], environ: Mapping[str, str], notes: list[str] | None = None
) -> dict[str, str]:
    """``-e NAME=VALUE`` / ``--env NAME=VALUE`` / ``--env=NAME=VALUE`` pairs in CMD (docker style),
    and the variables of its ``--env-file FILE`` / ``--env-file=FILE`` files.

    ``-e NAME`` alone passes the variable through from the environment (as
    docker does), so its value is taken from ``environ`` when set. As in
    docker, ``-e`` wins over an env-file. An env-file that cannot be read is
    a warning in ``notes`` (its values cannot be redacted), never a crash.
    """
    out: dict[str, str] = {}
    args = list(command)
    for i, a in enumerate(args):
        path: str | None = None
        if a == "--env-file" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--env-file="):
            path = a[len("--env-file=") :]
        if not path:
            continue
        try:
            out.update(read_env_file(path, environ))
        except (OSError, UnicodeError) as exc:
            if notes is not None:
                reason = getattr(exc, "strerror", None) or str(exc)
                notes.append(
                    f"warning: cannot read the command's --env-file {path} ({reason}): its "
                    "values are not redacted; pass them with --redact-env NAME"
                )
    i = 0
    while i < len(args):
        a = args[i]
        spec: str | None = None
        if a in ("-e", "--env") and i + 1 < len(args):
            spec = args[i + 1]
            i += 1
        elif a.startswith("--env="):
            spec = a[len("--env=") :]
        elif a.startswith("-e") and len(a) > 2 and not a.startswith("--"):
            spec = a[2:]
        i += 1
        if not spec:
            continue
        name, eq, value = spec.partition("=")
        if not name or not name.replace("_", "a").isalnum():
            continue
        _set(out, name, eq, value, environ)
    return out


__all__ = ["parse_command_env", "read_env_file"]
