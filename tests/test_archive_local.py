"""``--archive`` to a local folder (issue 16): resuming, the block limit, an unusable folder."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import hal_logging.archive as archive_mod
from hal_logging.archive import Archiver, Content
from hal_logging.archive.targets import LocalTarget
from hal_logging.pipeline.journal import open_journal, stream_bytes
from tests.forward_helpers import db_rows, run_forward


def _archiver(src: Path, dest: Path) -> Archiver:
    return Archiver(
        Content(str(src), "file"),
        LocalTarget(str(dest)),
        "R/T/file-x.hal-archive.gz",
        lambda: {},
        block_bytes=10,
        block_seconds=3600,
    )


def test_a_rerun_resumes_after_the_last_recorded_member(tmp_path: Path) -> None:
    src = tmp_path / "in.log"
    src.write_bytes(b"first part\n" * 50)
    a = _archiver(src, tmp_path / "arch")
    a._resume()
    assert a._send_some(final=True)
    gz = tmp_path / "arch" / "R" / "T" / "file-x.hal-archive.gz"
    # A crash after a member was written but before it was recorded: garbage at the end.
    with open(gz, "ab") as fh:
        fh.write(b"\x1f\x8b half a member")
    with open(src, "ab") as fh:
        fh.write(b"second part\n" * 50)
    b = _archiver(src, tmp_path / "arch")
    b._resume()
    assert b.progress.raw == 550 and b.progress.blocks == 1
    assert b.finish(time.monotonic() + 5)
    assert gzip.decompress(gz.read_bytes()) == src.read_bytes()
    manifest = json.loads(gz.with_name("file-x.hal-archive.json").read_text())
    assert manifest["content_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert manifest["blocks"] == 2


def test_near_the_block_limit_the_rest_goes_as_one_last_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_mod, "MAX_BLOCKS", 3)
    src = tmp_path / "in.log"
    a = _archiver(src, tmp_path / "arch")
    src.write_bytes(b"")
    a._resume()
    for i in range(6):
        with open(src, "ab") as fh:
            fh.write(b"line %d\n" % i)
        assert a._send_some(final=False)
    assert a.progress.blocks == 2  # the last block is kept for the end
    assert a.finish(time.monotonic() + 5)
    assert a.progress.blocks == 3
    gz = tmp_path / "arch" / "R" / "T" / "file-x.hal-archive.gz"
    assert gzip.decompress(gz.read_bytes()) == src.read_bytes()


def test_an_unusable_folder_exits_75_naming_where_the_bytes_are(tmp_path: Path) -> None:
    (tmp_path / "cmd.py").write_text("print('hello'); print('world')\n")
    (tmp_path / "afile").write_text("")
    r = run_forward(
        [
            "--db",
            "a.db",
            "--drain-timeout",
            "1",
            "--archive",
            str(tmp_path / "afile" / "sub"),
            "--",
            sys.executable,
            "cmd.py",
        ],
        tmp_path,
    )
    assert r.returncode == 75, r.stderr
    assert "the archive is incomplete" in r.stderr
    (journal,) = tmp_path.glob("hal-forward-journal-*.haljournal")
    assert str(journal) in r.stderr and f"--resume-journal {journal} --archive" in r.stderr
    assert "Traceback" not in r.stderr
    assert {x["Message"] for x in db_rows(tmp_path / "a.db")} >= {"hello", "world"}
    # A DEST that is a file: a usage error before anything runs.
    r = run_forward(
        ["--db", "b.db", "--archive", str(tmp_path / "afile"), "--", sys.executable, "cmd.py"],
        tmp_path,
    )
    assert r.returncode == 2 and "not a folder" in r.stderr


def test_hostile_container_through_docker_archived_and_shipped_back(
    docker_kit: Any, tmp_path: Path
) -> None:
    """The hostile agent in a real container (``docker run``, plain pipes), archived to a
    folder, shipped back into a fresh workspace: the same rows, ids and bytes."""
    from tests.forward_helpers import ROOT

    secret = "sk-hostile-0123456789abcdefghijXYZ"
    argv = docker_kit.python_argv(
        ROOT / "tests" / "fixtures" / "hostile_agent.py",
        env={"OPENAI_API_KEY": secret, "HAL_RUN_ID": "R16", "HAL_TASK_ID": "T16"},
        rm=True,
    )
    live = run_forward(["--db", "live.db", "--archive", "arch", "--", *argv], tmp_path)
    assert live.returncode == 3, live.stderr
    (gz,) = (tmp_path / "arch" / "R16" / "T16").glob("*.hal-archive.gz")
    manifest = json.loads(gz.with_name(gz.name.replace(".gz", ".json")).read_text())
    (journal,) = tmp_path.glob("hal-forward-journal-*.haljournal")
    fh, reader = open_journal(str(journal))
    with fh:
        printed = stream_bytes(reader)
    assert {s: (v["bytes"], v["sha256"]) for s, v in manifest["streams"].items()} == printed
    # The -e value is not in the archive (the reading VM knows the secret it gave).
    assert secret.encode() not in gzip.decompress(gz.read_bytes()).split(b"\n", 2)[1]
    back = run_forward(["--db", "back.db", str(gz)], tmp_path, env={"OPENAI_API_KEY": secret})
    assert back.returncode == 0, back.stderr

    def rows(db: Path) -> dict[str, Any]:
        return {r["Properties"]["hal"]["record_id"]: r for r in db_rows(db)}

    assert rows(tmp_path / "back.db") == rows(tmp_path / "live.db")
    assert not any(secret in json.dumps(r) for r in rows(tmp_path / "back.db").values())
