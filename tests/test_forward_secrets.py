"""Secrets from ``docker run --env-file FILE`` never reach a sink, and the raw logs say what they hold.

A fake ``docker`` (a small Python script on PATH) stands in for the daemon, so
this runs with or without one: like an agent that logs its environment, it
prints the values of the variables docker would give the container, from
``-e`` flags and ``--env-file`` files read with docker's rules.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from hal_logging import _json
from hal_logging.cli.forward import read_env_file
from tests.forward_helpers import db_rows, run_forward

pytestmark = pytest.mark.timeout(120)

OPENAI = "sk-test-0penai-Abcdefghijklmnop"
HF = "hf_Token_from_second_file_123456"
PASSED = "pass-through-value-77777777"
QUOTED = '"quoted secret value 999"'

FAKE_DOCKER = r'''#!PYTHON
"""Fake docker: `docker run [--env-file F | --env-file=F | -e N=V]... IMAGE` prints its env."""
import os, sys
args = sys.argv[1:]
env = {}
i = 0
while i < len(args):
    a = args[i]
    path = None
    if a == "--env-file":
        path = args[i + 1]; i += 1
    elif a.startswith("--env-file="):
        path = a.split("=", 1)[1]
    elif a in ("-e", "--env"):
        n, _, v = args[i + 1].partition("="); env[n] = v; i += 1
    if path:
        try:
            for line in open(path):
                line = line.rstrip("\n").lstrip()
                if not line or line.startswith("#"):
                    continue
                n, eq, v = line.partition("=")
                if eq:
                    env[n] = v
                elif n in os.environ:
                    env[n] = os.environ[n]
        except OSError as exc:
            print(f"docker: open {path}: {exc.strerror}", file=sys.stderr)
    i += 1
for n, v in sorted(env.items()):
    print(f"agent env {n}={v}")
print('{"event": "calling model", "api_key_used": "%s", "level": "info"}' % env.get("OPENAI_API_KEY", ""))
print(f"stderr mentions {env.get('HF_TOKEN', '')}", file=sys.stderr)
'''


@pytest.fixture
def fake_docker(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER.replace("PYTHON", sys.executable))
    docker.chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PASSED_VALUE": PASSED}


def _env_files(tmp_path: Path) -> tuple[Path, Path]:
    first = tmp_path / ".env"
    first.write_text(
        "# keys for the agent\n"
        "\n"
        f"OPENAI_API_KEY={OPENAI}\n"
        "HAL_RUN_ID=run-from-env-file\n"
        f"   MODEL_NOTE={QUOTED}\n"
        "PASSED_VALUE\n"
    )
    second = tmp_path / "more.env"
    second.write_text(f"HF_TOKEN={HF}\n")
    return first, second


def test_env_file_values_never_reach_a_sink(tmp_path: Path, fake_docker: dict[str, str]) -> None:
    first, second = _env_files(tmp_path)
    db = tmp_path / "ws.db"
    out = tmp_path / "rows.jsonl"
    cmd = ["docker", "run", "--rm", "--env-file", str(first), f"--env-file={second}", "img"]
    res = run_forward(["--db", str(db), "--", *cmd], tmp_path, fake_docker)
    assert res.returncode == 0, res.stderr
    res2 = run_forward(["--sink", "jsonl", "-o", str(out), "--", *cmd], tmp_path, fake_docker)
    assert res2.returncode == 0, res2.stderr

    stored = db.read_bytes() + out.read_bytes()
    for secret in (OPENAI, HF, PASSED, QUOTED):
        assert secret.encode() not in stored, secret
    rows = db_rows(db)
    text = "\n".join(r["Message"] + _json.dumps(r["Properties"]).decode() for r in rows)
    assert "[REDACTED:env:OPENAI_API_KEY]" in text
    assert "[REDACTED:env:HF_TOKEN]" in text
    assert "[REDACTED:env:PASSED_VALUE]" in text  # a bare NAME: passed through from the env
    # A HAL_* variable in an env-file is VM-chosen context, like -e HAL_RUN_ID=...
    assert {r["RunID"] for r in rows} == {"run-from-env-file"}


def test_unreadable_env_file_is_a_warning(tmp_path: Path, fake_docker: dict[str, str]) -> None:
    db = tmp_path / "ws.db"
    missing = tmp_path / "nope.env"
    res = run_forward(
        ["-q", "--db", str(db), "--", "docker", "run", "--env-file", str(missing), "img"],
        tmp_path,
        fake_docker,
    )
    assert res.returncode == 0, res.stderr
    assert "warning: cannot read the command's --env-file" in res.stderr
    assert str(missing) in res.stderr and "Traceback" not in res.stderr
    assert db_rows(db)  # the run went on


def test_read_env_file_follows_docker_rules(tmp_path: Path) -> None:
    f = tmp_path / "e.env"
    f.write_text('# c\n\nA=1\n  B = spaced\nC=x=y\nD\nE\nQ="q"\n')
    assert read_env_file(str(f), {"D": "from-env"}) == {
        "A": "1",
        "B": " spaced",
        "C": "x=y",
        "D": "from-env",
        "Q": '"q"',
    }


def test_raw_logs_raw_is_private_and_redacted_is_clean(
    tmp_path: Path, fake_docker: dict[str, str]
) -> None:
    first, second = _env_files(tmp_path)
    raw, red = tmp_path / "raw.log", tmp_path / "redacted.log"
    res = run_forward(
        [
            "--db",
            str(tmp_path / "ws.db"),
            "--raw-log",
            str(raw),
            "--raw-log-redacted",
            str(red),
            "--",
            "docker",
            "run",
            "--env-file",
            str(first),
            "--env-file",
            str(second),
            "img",
        ],
        tmp_path,
        fake_docker,
    )
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(raw.stat().st_mode) == 0o600
    assert stat.S_IMODE(red.stat().st_mode) == 0o600
    raw_text, red_text = raw.read_text(), red.read_text()
    assert OPENAI in raw_text and HF in raw_text  # raw means raw: documented
    for secret in (OPENAI, HF, PASSED):
        assert secret not in red_text
    assert "agent env OPENAI_API_KEY=[REDACTED:env:OPENAI_API_KEY]\n" in red_text
    assert "stderr mentions [REDACTED:env:HF_TOKEN]\n" in red_text
    # Everything else kept as it came, line for line.
    assert len(red_text.splitlines()) == len(raw_text.splitlines())
    assert "agent env HAL_RUN_ID=run-from-env-file\n" in red_text


def test_raw_log_redacted_needs_redaction(tmp_path: Path) -> None:
    res = run_forward(
        ["--no-redact", "--raw-log-redacted", str(tmp_path / "r.log"), "--", "true"], tmp_path
    )
    assert res.returncode == 2 and "--raw-log-redacted" in res.stderr


def test_env_file_with_the_real_daemon(tmp_path: Path, docker_kit: Any) -> None:
    """The same through a real ``docker run --env-file`` (skipped without a daemon)."""
    first, second = _env_files(tmp_path)
    db = tmp_path / "ws.db"
    argv = docker_kit.python_argv(
        "-c",
        "import os\n"
        "for n in ('OPENAI_API_KEY', 'HF_TOKEN', 'PASSED_VALUE', 'MODEL_NOTE'):\n"
        "    print(n, os.environ.get(n))\n",
        rm=True,
        extra=["--env-file", str(first), f"--env-file={second}"],
    )
    res = run_forward(["--db", str(db), "--", *argv], tmp_path, {"PASSED_VALUE": PASSED})
    assert res.returncode == 0, res.stderr
    rows = db_rows(db)
    messages = [r["Message"] for r in rows]
    assert "OPENAI_API_KEY [REDACTED:env:OPENAI_API_KEY]" in messages
    assert "PASSED_VALUE [REDACTED:env:PASSED_VALUE]" in messages  # docker passed it through
    for secret in (OPENAI, HF, PASSED, QUOTED):
        assert secret.encode() not in db.read_bytes(), secret
    assert {r["RunID"] for r in rows} == {"run-from-env-file"}


def test_an_existing_raw_log_is_narrowed_to_0600(tmp_path: Path) -> None:
    raw = tmp_path / "raw.log"
    raw.write_text("earlier run\n")
    raw.chmod(0o644)
    res = run_forward(
        ["--db", str(tmp_path / "ws.db"), "--raw-log", str(raw), "--", "echo", "again"], tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(raw.stat().st_mode) == 0o600
    assert raw.read_text() == "earlier run\nagain\n"  # appended, as before
