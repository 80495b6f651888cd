"""The destination is always deliberate, and a checkpoint belongs to its destination.

Through the real CLI: a fake Azure VM (a DMI folder that says Azure and a
loopback IMDS stand-in) without ingestion settings refuses; off Azure the local
default stays, with no network call; a file shipped to the local workspace and
then to the Azure stand-in arrives whole at both, and a rerun to either resumes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hal_logging import _json
from hal_logging.emulator import Emulator
from hal_logging.pipeline.parsing import record_id
from tests.azure_helpers import started_emulator
from tests.forward_helpers import db_count, db_rows, run_forward, wire_line
from tests.vm_helpers import StubIMDS, imds_server, make_dmi

pytestmark = pytest.mark.timeout(120)

N = 300


def write_log(path: Path, n: int = N, first: int = 0) -> None:
    with open(path, "ab") as fh:
        for i in range(first, first + n):
            fh.write(wire_line(i) + b"\n")


def azure_vm_env(tmp_path: Path, stub: StubIMDS) -> dict[str, str]:
    return {
        "HAL_LOGGING_DMI_DIR": str(make_dmi(tmp_path / "dmi-azure")),
        "HAL_LOGGING_IMDS_URL": stub.url,
    }


def test_azure_vm_without_settings_refuses(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    write_log(log, 5)
    with imds_server() as stub:
        env = azure_vm_env(tmp_path, stub)
        res = run_forward([str(log)], tmp_path, env)
        assert res.returncode == 2, res.stderr
        err = res.stderr
        assert "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT" in err
        assert "AZURE_MONITOR_DATA_COLLECTION_RULE_ID" in err
        assert "--sink sqlite" in err and "--db" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "hal-logs.db").exists()
        assert stub.count >= 1  # DMI said Azure, so IMDS was asked to confirm

        # Wrap mode refuses too, before running anything.
        marker = tmp_path / "ran"
        res = run_forward(["--", "touch", str(marker)], tmp_path, env)
        assert res.returncode == 2 and not marker.exists()


@pytest.mark.parametrize(
    "args",
    [["--sink", "sqlite"], ["--db", "chosen.db"]],
    ids=["sink-sqlite", "db"],
)
def test_azure_vm_writes_the_workspace_when_asked(tmp_path: Path, args: list[str]) -> None:
    log = tmp_path / "run.log"
    write_log(log, 5)
    with imds_server() as stub:
        res = run_forward([*args, str(log)], tmp_path, azure_vm_env(tmp_path, stub))
    assert res.returncode == 0, res.stderr
    db = tmp_path / ("chosen.db" if "--db" in args else "hal-logs.db")
    assert db_count(db) == 5
    # The VM's name came from (the stand-in for) IMDS: a trusted column.
    assert {r["VMName"] for r in db_rows(db)} == {"hal-vm-007"}


def test_off_azure_local_default_costs_no_network_call(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    write_log(log, 5)
    # A DMI folder that is not Azure (a Hyper-V guest says Microsoft, not the tag).
    dmi = make_dmi(tmp_path / "dmi-hyperv", tag="0000-0000-0000-0000")
    with imds_server() as stub:
        res = run_forward(
            [str(log)],
            tmp_path,
            {"HAL_LOGGING_DMI_DIR": str(dmi), "HAL_LOGGING_IMDS_URL": stub.url},
        )
        assert stub.count == 0  # answered from the DMI files alone
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "local workspace" in ln]
    assert len(lines) == 1 and "hal-logs.db" in lines[0]
    assert db_count(tmp_path / "hal-logs.db") == 5


def _emu_ids(emu: Emulator) -> list[str]:
    return [i for i in emu.workspace.record_ids() if i]


def test_second_destination_gets_the_file_whole_and_reruns_resume(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    write_log(log)
    db = tmp_path / "local.db"
    summary = tmp_path / "summary.json"
    with started_emulator(tmp_path) as emu:
        azure = emu.env()
        # 1. The mistake: shipped to the local workspace.
        first = run_forward(["--db", str(db), str(log)], tmp_path)
        assert first.returncode == 0, first.stderr
        assert db_count(db) == N

        # 2. Settings fixed: the same file goes to Azure whole, despite the checkpoint.
        second = run_forward(["--summary-json", str(summary), str(log)], tmp_path, azure)
        assert second.returncode == 0, second.stderr
        assert "already shipped" not in second.stderr
        ids = _emu_ids(emu)
        assert len(ids) == len(set(ids)) == N
        s = _json.loads(summary.read_bytes())
        assert s["destination"].startswith("azure:") and s["resumed"] == []
        assert s["delivery"] == {"complete": True, "status": 0, "undelivered": 0, "where_kept": []}

        # 3. A rerun to each destination resumes: nothing is sent twice.
        again_azure = run_forward(["--summary-json", str(summary), str(log)], tmp_path, azure)
        assert again_azure.returncode == 0, again_azure.stderr
        assert "already shipped" in again_azure.stderr
        assert len(_emu_ids(emu)) == N
        s = _json.loads(summary.read_bytes())
        assert s["resumed"] == [{"input": str(log), "offset": log.stat().st_size}]
        again_local = run_forward(["--db", str(db), str(log)], tmp_path)
        assert again_local.returncode == 0 and "already shipped" in again_local.stderr
        assert db_count(db) == N

        # 4. New lines: each destination resumes from its own offset and gets only them.
        size = log.stat().st_size
        write_log(log, 10, first=N)
        more = run_forward(["--summary-json", str(summary), str(log)], tmp_path, azure)
        assert more.returncode == 0, more.stderr
        assert "resumed" in more.stderr and f"byte {size}" in more.stderr
        ids = _emu_ids(emu)
        assert len(ids) == len(set(ids)) == N + 10
        assert _json.loads(summary.read_bytes())["resumed"] == [{"input": str(log), "offset": size}]
        more_local = run_forward(["--db", str(db), str(log)], tmp_path)
        assert more_local.returncode == 0
        assert db_count(db) == N + 10

    # One checkpoint file beside the input, one section per destination.
    cp = _json.loads((tmp_path / "run.log.hal-checkpoint").read_bytes())
    assert cp["version"] == 2
    kinds = sorted(k.split(":", 1)[0] for k in cp["destinations"])
    assert kinds == ["azure", "sqlite"]


def test_old_checkpoint_without_destination_ships_whole_once(tmp_path: Path) -> None:
    """A version-1 checkpoint: its input is shipped whole once, under the record ids
    that version gave (``record_id`` of the bare file identity), then resumes."""
    log = tmp_path / "run.log"
    write_log(log, 20)
    db = tmp_path / "local.db"
    assert run_forward(["--db", str(db), str(log)], tmp_path).returncode == 0
    cp_path = tmp_path / "run.log.hal-checkpoint"
    cp = _json.loads(cp_path.read_bytes())
    (entries,) = [d["files"] for d in cp["destinations"].values()]
    for e in entries.values():  # as 0.x wrote it: no context tag in the source
        e["source"] = e["source"].split("#")[0]
    legacy_source = next(iter(entries.values()))["source"]
    cp_path.write_bytes(_json.dumps({"version": 1, "files": entries}))

    other = tmp_path / "other.db"
    res = run_forward(["--db", str(other), str(log)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "does not say which destination" in res.stderr
    rows = db_rows(other)
    assert len(rows) == 20
    assert rows[0]["Properties"]["hal"]["record_id"] == record_id(legacy_source, "unknown", 0)
    # The old entries are kept (under an unknown destination), the new one beside them.
    cp = _json.loads(cp_path.read_bytes())
    assert "unknown:version-1" in cp["destinations"] and len(cp["destinations"]) == 2
    again = run_forward(["--db", str(other), str(log)], tmp_path)
    assert again.returncode == 0 and "already shipped" in again.stderr
    assert db_count(other) == 20


def test_reship_under_corrected_task_id_stores_the_rows(tmp_path: Path) -> None:
    """Same bytes under another task are other rows: other record ids, not duplicates."""
    log = tmp_path / "run.log"
    write_log(log, 25)
    db = tmp_path / "local.db"
    wrong = run_forward(["--db", str(db), "--task-id", "T-wrong", str(log)], tmp_path)
    assert wrong.returncode == 0, wrong.stderr
    fixed = run_forward(["--db", str(db), "--task-id", "T-right", str(log)], tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "under another context" in fixed.stderr
    rows = db_rows(db)
    assert sorted({r["TaskID"] for r in rows}) == ["T-right", "T-wrong"]
    assert sum(r["TaskID"] == "T-right" for r in rows) == 25
    # A rerun under the corrected task resumes; under the same context ids stay stable.
    again = run_forward(["--db", str(db), "--task-id", "T-right", str(log)], tmp_path)
    assert again.returncode == 0 and "already shipped" in again.stderr
    assert db_count(db) == 50


def test_directory_given_as_file_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    res = run_forward([str(folder)], tmp_path)
    assert res.returncode == 1
    assert "is a directory" in res.stderr and "no such file" not in res.stderr
