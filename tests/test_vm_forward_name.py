"""The forwarder fills VMName from the VM's metadata when on Azure and no name is given."""

from __future__ import annotations

from pathlib import Path

from tests.forward_helpers import db_rows, run_forward
from tests.vm_helpers import imds_server, make_dmi


def test_forwarder_takes_vm_name_from_imds_on_azure(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_text('plain line\n{"_hal":1,"Level":"INFO","Message":"m","VMName":"forged-vm"}\n')
    dmi = make_dmi(tmp_path / "dmi")
    with imds_server() as stub:
        env = {"HAL_LOGGING_DMI_DIR": str(dmi), "HAL_LOGGING_IMDS_URL": stub.url}
        done = run_forward(["--db", str(tmp_path / "w.db"), "--run-id", "R", str(log)], tmp_path, env)
        assert done.returncode == 0, done.stderr
        assert stub.count >= 1
    rows = db_rows(tmp_path / "w.db")
    assert [r["VMName"] for r in rows] == ["hal-vm-007", "hal-vm-007"]
    assert rows[1]["Properties"]["hal"]["claimed"]["VMName"] == "forged-vm"


def test_forwarder_off_azure_leaves_vm_name_empty_and_asks_nobody(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_text("plain line\n")
    with imds_server() as stub:
        env = {"HAL_LOGGING_DMI_DIR": str(tmp_path), "HAL_LOGGING_IMDS_URL": stub.url}
        done = run_forward(["--db", str(tmp_path / "w.db"), str(log)], tmp_path, env)
        assert done.returncode == 0, done.stderr
        assert stub.count == 0  # no DMI markers: no network call at all
    assert [r["VMName"] for r in db_rows(tmp_path / "w.db")] == [""]
