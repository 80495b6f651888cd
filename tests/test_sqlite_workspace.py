"""The local workspace: once per record id, WAL, concurrent forwarders and readers."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from hal_logging import schema
from hal_logging.pipeline.sinks.sqlite import Workspace

from .forward_helpers import db_count, db_rows, start_forward, wire_line


def _row(i: int, rid: str | None) -> dict:
    row = schema.empty_row()
    row.update(
        TimeGenerated="2024-05-01T00:00:00.000000Z", Level="INFO", Message=f"m{i} é", LoggerName="x"
    )
    row["Properties"] = {"n": i, "hal": {"record_id": rid}} if rid else {"n": i}
    return row


def test_workspace_stores_each_record_id_once(tmp_path: Path) -> None:
    ws = Workspace(str(tmp_path / "w.db"))
    assert ws.journal_mode == "wal"
    assert ws.insert_rows([_row(i, f"id{i}") for i in range(10)]) == (10, 0)
    assert ws.insert_rows([_row(i, f"id{i}") for i in range(5, 15)]) == (5, 5)
    # Rows without a record id (e.g. accepted by the emulator from another client) all stay.
    assert ws.insert_rows([_row(i, None) for i in range(3)] * 2) == (6, 0)
    ws.close()
    rows = db_rows(tmp_path / "w.db")
    assert len(rows) == 21
    assert rows[0]["Message"] == "m0 é" and rows[0]["Properties"]["n"] == 0
    conn = sqlite3.connect(tmp_path / "w.db")
    cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{schema.TABLE_NAME}")')]
    assert cols == [*schema.COLUMN_NAMES, "_record_id"]
    indexes = {r[1] for r in conn.execute(f'PRAGMA index_list("{schema.TABLE_NAME}")')}
    assert len(indexes) >= 4  # record id, run/task, task, time


def test_several_forwarders_one_workspace_with_a_reader(tmp_path: Path) -> None:
    n_files, n_lines = 4, 3000
    for f in range(n_files):
        lines = [wire_line(f * 100_000 + i, msg=f"file {f} line {i}") for i in range(n_lines)]
        (tmp_path / f"in{f}.log").write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "shared.db"
    stop = threading.Event()
    reader_errors: list[str] = []
    seen: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(db_count(db))
            except sqlite3.Error as exc:  # pragma: no cover - the failure this test looks for
                reader_errors.append(str(exc))

    t = threading.Thread(target=reader)
    t.start()
    procs = [
        start_forward(
            ["--db", str(db), "--batch-rows", "200", "--summary-json", f"s{f}.json", f"in{f}.log"],
            tmp_path,
        )
        for f in range(n_files)
    ]
    # And the same file twice at once, with separate checkpoints: stored once.
    procs.append(
        start_forward(["--db", str(db), "--checkpoint", "other.ckpt", "in0.log"], tmp_path)
    )
    outs = [p.communicate(timeout=120) for p in procs]
    stop.set()
    t.join()
    assert [p.returncode for p in procs] == [0] * len(procs), [o[1] for o in outs]
    assert not reader_errors
    assert db_count(db) == n_files * n_lines
    rows = db_rows(db)
    assert len({r["_record_id"] for r in rows}) == len(rows)
    dupes = sum(
        json.loads((tmp_path / f"s{f}.json").read_text())["duplicates"] for f in range(n_files)
    )
    assert dupes <= n_lines  # only the doubled file can have met its twin


def test_unusable_workspace_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "in.log").write_bytes(wire_line(1) + b"\n")
    p = start_forward(["--db", str(tmp_path / "adir"), "in.log"], tmp_path)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 73  # the destination cannot be used (75 means rows kept)
    assert "--db" in err and "Traceback" not in err
    # Nothing was delivered, so the checkpoint did not move: a rerun ships everything.
    assert not (tmp_path / "in.log.hal-checkpoint").exists()


def test_new_workspaces_use_large_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    """A new file gets PAGE_SIZE pages; a workspace made with SQLite's default
    4 KB pages (before this size was chosen) is used as it is, rows and all,
    with its WAL checkpointed at the same size in bytes."""
    from hal_logging.pipeline.sinks.sqlite import PAGE_SIZE, WAL_BYTES

    new = Workspace(str(tmp_path / "new.db"))
    assert new._conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE != 4096
    assert new._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_BYTES // PAGE_SIZE
    new.close()
    old_path = tmp_path / "old.db"
    conn = sqlite3.connect(old_path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(schema.sqlite_ddl(schema.TABLE_NAME))
    conn.commit()
    conn.close()
    old = Workspace(str(old_path))
    assert old._conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert old._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_BYTES // 4096
    assert old.insert_rows([_row(i, f"id{i}") for i in range(3)]) == (3, 0)
    old.close()
    assert [r["Message"] for r in db_rows(old_path)] == ["m0 é", "m1 é", "m2 é"]
