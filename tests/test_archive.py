"""``--archive DEST`` (issue 16): a local folder and Azure Blob Storage (Azurite), real parts.

Azurite runs over HTTPS with OAuth on; the real ``azure-storage-blob`` client gets
its token from the package emulator's IMDS stand-in (a JWT with the claims
Azurite checks), as the ingestion path does. Faults: Azurite stopped mid-upload
and restarted, the forwarder SIGKILLed mid-archive and rerun, a token Azurite
refuses (403) and a missing container. Each ends with an archive whose sha256
matches the bytes printed, or a non-zero exit naming where the bytes still are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hal_logging.archive import Content
from hal_logging.pipeline.journal import JournalReader, open_journal, stream_bytes
from tests.azure_helpers import client_env, started_emulator
from tests.azurite_helpers import Azurite, require_azurite
from tests.forward_helpers import ROOT, db_rows, forward_cmd, row_fields
from tests.waiting import wait_for

HOSTILE = ROOT / "tests" / "fixtures" / "hostile_agent.py"
SECRET = "sk-hostile-0123456789abcdefghijXYZ"

#: Prints numbered lines on both streams until the file named by argv[1] exists.
UNTIL_FILE = """\
import os, sys, time
i = 0
while not os.path.exists(sys.argv[1]):
    print(f"out line {i} " + "x" * 200, flush=True)
    print(f"err line {i}", file=sys.stderr, flush=True)
    i += 1
    time.sleep(0.005)
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Any, Azurite, dict[str, str]]]:
    """The emulator (IMDS tokens), Azurite with a container ``arch``, and the env to use them."""
    binary = require_azurite()
    with started_emulator(tmp_path) as emu:
        az = Azurite(binary, tmp_path, tmp_path / "emu-ca")
        az.ca_bundle = Path(emu.ca_path)
        az.start()
        try:
            az.admin("arch").create_container()
            env = client_env(emu.env())
            for k in (
                "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT",
                "AZURE_MONITOR_DATA_COLLECTION_RULE_ID",
                "HAL_LOGGING_DB",
            ):
                env.pop(k, None)
            env["HAL_LOGGING_ARCHIVE_BLOCK_SECONDS"] = "0.3"
            env["OPENAI_API_KEY"] = SECRET
            yield emu, az, env
        finally:
            az.stop()


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> Any:
    import subprocess

    return subprocess.run(
        forward_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _archived_run(task: str, url: str, until: Path) -> list[str]:
    """The forwarder's arguments for wrapping cmd.py (UNTIL_FILE, ending when ``until``
    exists) into w.db, archived to ``url``."""
    return [
        "--sink",
        "sqlite",
        "--db",
        "w.db",
        "--task-id",
        task,
        "--archive",
        url,
        "--",
        sys.executable,
        "cmd.py",
        str(until),
    ]


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> Any:
    import subprocess

    return subprocess.Popen(
        forward_cmd(*args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _blob_names(az: Azurite) -> list[str]:
    return sorted(b.name for b in az.admin("arch").list_blobs())


def _blob_bytes(az: Azurite, name: str) -> bytes:
    return bytes(az.admin("arch").get_blob_client(name).download_blob().readall())


def _committed(az: Azurite, name: str) -> list[str]:
    committed, _ = az.admin("arch").get_blob_client(name).get_block_list("committed")
    return [b.id for b in committed]


def _archive_blob(az: Azurite) -> str:
    names = [n for n in _blob_names(az) if n.endswith(".hal-archive.gz")]
    assert len(names) == 1, names
    return names[0]


def _journal(folder: Path) -> Path:
    (j,) = folder.glob("hal-forward-journal-*.haljournal")
    return j


def _streams_of(data: bytes) -> dict[str, tuple[int, str]]:
    reader = JournalReader(io.BytesIO(data))
    reader.read_header()
    return stream_bytes(reader)


def _journal_streams(path: Path) -> dict[str, tuple[int, str]]:
    fh, reader = open_journal(str(path))
    with fh:
        return stream_bytes(reader)


def _rows(db: Path) -> dict[str, tuple[Any, ...]]:
    out = {}
    for r in db_rows(db):
        out[r["Properties"]["hal"]["record_id"]] = (
            *row_fields(r),
            json.dumps(r["Properties"], sort_keys=True),
        )
    return out


def _check_manifest(manifest: dict[str, Any], data: bytes, journal: Path) -> None:
    raw = gzip.decompress(data)
    assert manifest["content_bytes"] == len(raw)
    assert manifest["content_sha256"] == hashlib.sha256(raw).hexdigest()
    assert manifest["compressed_bytes"] == len(data)
    printed = _journal_streams(journal)
    assert _streams_of(raw) == printed  # the bytes printed, stream by stream
    for s, (n, sha) in printed.items():
        assert manifest["streams"][s]["bytes"] == n and manifest["streams"][s]["sha256"] == sha


def _check_blob(az: Azurite, blob: str, journal: Path) -> None:
    """The archive blob and its manifest (the .json beside it) against the journal."""
    manifest = json.loads(_blob_bytes(az, blob.replace(".gz", ".json")))
    _check_manifest(manifest, _blob_bytes(az, blob), journal)


def test_hostile_output_archived_to_azurite_and_a_folder_ships_back_identical(
    stack: tuple[Any, Azurite, dict[str, str]], tmp_path: Path
) -> None:
    _emu, az, env = stack
    url = az.container_url("arch")
    ctx = ["--run-id", "R16", "--task-id", "T16", "--sink", "sqlite"]
    live = _run(
        [*ctx, "--db", "live.db", "--archive", url, "--", sys.executable, str(HOSTILE)],
        tmp_path,
        env,
    )
    assert live.returncode == 3, (
        live.stderr
    )  # the agent's own status: delivery and archive complete
    journal = _journal(tmp_path)
    # The same journal to a local folder (a replay into the workspace that holds it: no rows).
    local = _run(
        [
            "--sink",
            "sqlite",
            "--db",
            "live.db",
            "--resume-journal",
            str(journal),
            "--archive",
            "arch",
        ],
        tmp_path,
        env,
    )
    assert local.returncode == 0, local.stderr

    blob = _archive_blob(az)
    assert blob.startswith("R16/T16/journal-")
    blob_manifest = json.loads(
        _blob_bytes(az, blob.replace(".hal-archive.gz", ".hal-archive.json"))
    )
    _check_manifest(blob_manifest, _blob_bytes(az, blob), journal)
    (local_gz,) = (tmp_path / "arch").rglob("*.hal-archive.gz")
    local_manifest = json.loads(
        local_gz.with_name(local_gz.name.replace(".gz", ".json")).read_text()
    )
    _check_manifest(local_manifest, local_gz.read_bytes(), journal)
    assert gzip.decompress(local_gz.read_bytes()) == gzip.decompress(_blob_bytes(az, blob))
    # The command line's -e values never leave the VM in an archive's header.
    assert Content(str(journal), "journal").header["argv"] == [sys.executable, str(HOSTILE)]

    live_rows = _rows(tmp_path / "live.db")
    assert len(live_rows) > 10
    for name, arg in (("from-blob.db", f"{url}/{blob}"), ("from-folder.db", str(local_gz))):
        back = _run(["--sink", "sqlite", "--db", name, arg], tmp_path, env)
        assert back.returncode == 0, back.stderr
        assert _rows(tmp_path / name) == live_rows  # same ids, times, streams, redaction
    # Into the workspace that already holds the run: nothing added.
    again = _run(["--sink", "sqlite", "--db", "live.db", str(local_gz)], tmp_path, env)
    assert again.returncode == 0 and _rows(tmp_path / "live.db") == live_rows


def test_file_mode_archive_and_back(tmp_path: Path) -> None:
    log = tmp_path / "docker_output.log"
    log.write_bytes(
        b"".join(b"line %d\n" % i for i in range(5000))
        + b"Traceback (most recent call last):\n  x\nValueError: v\n"
    )
    env = client_env({})
    r = _run(
        ["--sink", "sqlite", "--db", "a.db", "--task-id", "T", "--archive", "arch", str(log)],
        tmp_path,
        env,
    )
    assert r.returncode == 0, r.stderr
    (gz,) = (tmp_path / "arch").rglob("*.hal-archive.gz")
    assert gzip.decompress(gz.read_bytes()) == log.read_bytes()
    manifest = json.loads(gz.with_name(gz.name.replace(".gz", ".json")).read_text())
    assert manifest["kind"] == "file"
    assert manifest["streams"]["unknown"]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    back = _run(["--sink", "sqlite", "--db", "b.db", str(gz)], tmp_path, env)
    assert back.returncode == 0, back.stderr
    ids = lambda db: sorted(r["Properties"]["hal"]["record_id"] for r in db_rows(db))  # noqa: E731
    assert ids(tmp_path / "a.db") == ids(tmp_path / "b.db")
    lo, hi = manifest["streams"]["unknown"]["record_ids"]
    assert all(lo <= i <= hi for i in ids(tmp_path / "b.db"))


def test_azurite_stopped_mid_upload_and_restarted(
    stack: tuple[Any, Azurite, dict[str, str]], tmp_path: Path
) -> None:
    _emu, az, env = stack
    (tmp_path / "cmd.py").write_text(UNTIL_FILE)
    stop = tmp_path / "stop"
    import subprocess

    errfile = tmp_path / "forward.err"
    with open(errfile, "w") as errfh:
        proc = subprocess.Popen(
            forward_cmd(*_archived_run("T1", az.container_url("arch"), stop)),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errfh,
        )
    try:
        wait_for(lambda: [n for n in _blob_names(az) if n.endswith(".gz")], 60, "a first block")
        blob = _archive_blob(az)
        wait_for(lambda: len(_committed(az, blob)) >= 2, 60, "blocks as the run goes")
        az.stop()
        journal = _journal(tmp_path)
        wait_for(lambda: "archive: cannot" in errfile.read_text(), 60, "the outage said")
        az.start()
        n = len(_committed(az, blob))
        wait_for(lambda: len(_committed(az, blob)) > n, 60, "uploads again after the restart")
    finally:
        stop.write_text("")
        proc.wait(120)
    err = errfile.read_text()
    assert proc.returncode == 0, err
    assert "reachable again" in err
    _check_blob(az, blob, journal)


def test_forwarder_sigkilled_mid_archive_then_rerun_resumes_the_blob(
    stack: tuple[Any, Azurite, dict[str, str]], tmp_path: Path
) -> None:
    _emu, az, env = stack
    (tmp_path / "cmd.py").write_text(UNTIL_FILE)
    url = az.container_url("arch")
    proc = _start(_archived_run("T2", url, tmp_path / "never"), tmp_path, env)
    try:
        wait_for(lambda: [n for n in _blob_names(az) if n.endswith(".gz")], 60, "a first block")
        blob = _archive_blob(az)
        wait_for(lambda: len(_committed(az, blob)) >= 2, 60, "blocks as the run goes")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    before = _committed(az, blob)
    assert not [n for n in _blob_names(az) if n.endswith(".json")]  # no manifest: unfinished
    journal = _journal(tmp_path)
    rerun = _run(
        ["--sink", "sqlite", "--db", "w.db", "--resume-journal", str(journal), "--archive", url],
        tmp_path,
        env,
    )
    assert rerun.returncode == 0, rerun.stderr
    after = _committed(az, blob)
    assert after[: len(before)] == before  # resumed, not started over
    _check_blob(az, blob, journal)


def test_a_refused_token_and_a_missing_container_say_what_to_fix(
    stack: tuple[Any, Azurite, dict[str, str]], tmp_path: Path
) -> None:
    emu, az, env = stack
    log = tmp_path / "out.log"
    log.write_bytes(b"".join(b"hello %d\n" % i for i in range(100)))
    missing = _run(
        ["--sink", "sqlite", "--db", "a.db", "--archive", az.container_url("nope"), str(log)],
        tmp_path,
        env,
    )
    assert missing.returncode == 75, missing.stderr
    assert "container 'nope' does not exist" in missing.stderr
    assert str(log) in missing.stderr  # where the bytes still are
    assert "Traceback" not in missing.stderr
    assert len(db_rows(tmp_path / "a.db")) == 100  # the rows were shipped all the same

    emu.tokens.storage_issuer = "https://login.example.invalid/"  # Azurite refuses its claims
    refused = _run(
        ["--sink", "sqlite", "--db", "b.db", "--archive", az.container_url("arch"), str(log)],
        tmp_path,
        env,
    )
    assert refused.returncode == 75, refused.stderr
    assert "403" in refused.stderr and "AuthenticationFailed" in refused.stderr
    assert str(log) in refused.stderr
    assert not _blob_names(az)
