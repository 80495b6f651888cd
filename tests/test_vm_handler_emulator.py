"""AzureMonitorHandler end to end: the real SDK and credentials, over HTTPS, to the stand-in.

The acceptance tests of issue 6: 8 threads x 2,000 records all arrive; with
the service unreachable or hung no call raises or waits for it and shutdown
ends within its timeout; logging from inside the delivery threads neither
deadlocks nor loops.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hal_logging import schema
from hal_logging.azure import vm
from hal_logging.azure.handler import AzureMonitorHandler
from hal_logging.azure.setup import setup_logging
from hal_logging.emulator import REJECT_MARKER, Emulator
from tests.azure_helpers import azure_env, client_env, emulator  # noqa: F401
from tests.test_vm_handler import Capture, run_with_deadline, spilled
from tests.vm_helpers import closed_port, make_dmi, silent_server
from tests.waiting import wait_for


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own (no propagation: pytest's capture stays out of the hot path)."""
    lg = logging.getLogger("hal.test.vm")
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    yield lg
    for h in list(lg.handlers):
        lg.removeHandler(h)


@pytest.fixture
def stand_in(emulator: Emulator, azure_env: dict[str, str]) -> Emulator:  # noqa: F811
    """The stand-in, with this process's Azure SDK and credentials pointed at it."""
    return emulator


def handler_for(emu: Emulator, tmp_path: Path, **kw: Any) -> AzureMonitorHandler:
    kw.setdefault("spill_path", tmp_path / "spill.jsonl")
    return AzureMonitorHandler(emu.endpoint, emu.rule_id, emu.stream, **kw)


def test_eight_threads_all_arrive(
    stand_in: Emulator, tmp_path: Path, logger: logging.Logger
) -> None:
    h = handler_for(stand_in, tmp_path, context={"run_id": "run-8x2000"}, close_timeout=60)
    logger.addHandler(h)
    threads, per_thread = 8, 2000

    def work(t: int) -> None:
        for i in range(per_thread):
            logger.info("thread %d record %d", t, i, extra={"t": t, "i": i})

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    run_with_deadline(h.close, 90)
    total = threads * per_thread
    stats = h.stats
    assert stats["emitted"] == total and stats["sent"] == total, stats
    assert stats["errors"] == stats["refused"] == stats["backlog"] == 0
    # A burst beyond queue_size is spilled to disk and sent from there: none is left.
    assert stats["recovered"] == stats["spilled"]
    rows = stand_in.workspace.rows()
    assert len(rows) == total
    seen = {(r["Properties"]["t"], r["Properties"]["i"]) for r in rows}
    assert seen == {(t, i) for t in range(threads) for i in range(per_thread)}
    assert len(set(stand_in.workspace.record_ids())) == total
    assert {r["RunID"] for r in rows} == {"run-8x2000"}
    assert {r["LogType"] for r in rows} == {"VMOperation"}
    emu_stats = stand_in.stats()
    assert emu_stats["over_limit_requests"] == 0 and emu_stats["undeclared_columns"] == {}
    # Batched, not one request per record. How full each batch is depends on how the
    # emitting threads and the sender are scheduled (a loaded CI box gives smaller
    # batches), so only the order of magnitude is asserted.
    assert emu_stats["requests"] <= total / 10
    assert not (tmp_path / "spill.jsonl").exists() and not h.resend_path.exists()


def test_unreachable_service_spills_and_never_raises(
    stand_in: Emulator, tmp_path: Path, logger: logging.Logger
) -> None:
    """A closed port: emit returns, batches are spilled after the retry window, nothing is lost."""
    h = AzureMonitorHandler(
        f"https://127.0.0.1:{closed_port()}",
        stand_in.rule_id,
        queue_size=100,
        retry_timeout=0.5,
        close_timeout=5,
        spill_path=tmp_path / "spill.jsonl",
    )
    logger.addHandler(h)

    def burst() -> None:
        for i in range(300):
            logger.warning("nobody listens %d", i)

    run_with_deadline(burst)
    run_with_deadline(h.close, 5 + 10)
    rows = spilled(tmp_path / "spill.jsonl")
    assert sorted(r["Message"] for r in rows) == sorted(f"nobody listens {i}" for i in range(300))
    assert all(list(r)[1:] == list(schema.COLUMN_NAMES) for r in rows)
    stats = h.stats
    assert stats["spilled"] == 300 and stats["sent"] == 0 and stats["errors"] == 0


def test_hung_service_close_ends_within_its_timeout(
    stand_in: Emulator, tmp_path: Path, logger: logging.Logger
) -> None:
    """A service that accepts and never answers: emit returns while the sender hangs."""
    with silent_server() as server:
        port = server.url.rsplit(":", 1)[1]
        h = AzureMonitorHandler(
            f"https://127.0.0.1:{port}",
            stand_in.rule_id,
            queue_size=50,
            close_timeout=0.5,
            spill_path=tmp_path / "spill.jsonl",
        )
        logger.addHandler(h)
        logger.error("wakes the sender, which then hangs in the TLS handshake")
        wait_for(lambda: server.accepted, 30, "the sender to connect")

        def burst() -> None:
            for i in range(500):
                logger.info("while the service hangs %d", i)

        run_with_deadline(burst)  # the sender is stuck; these only queue or spill
        assert h.stats["spilled"] >= 500 - 50
        run_with_deadline(h.close, 0.5 + 10)
        assert h.stats["spilled"] == 501  # the in-flight row and the queue too
        assert len(spilled(tmp_path / "spill.jsonl")) == 501


def test_logging_inside_delivery_does_not_loop(stand_in: Emulator, tmp_path: Path) -> None:
    """A credential that logs, and azure-core at DEBUG, with the handler on the root logger."""
    from azure.identity import ManagedIdentityCredential

    class ChattyCredential:
        def __init__(self) -> None:
            self.inner = ManagedIdentityCredential()
            self.calls = 0

        def get_token(self, *scopes: str, **kw: Any) -> Any:
            self.calls += 1
            logging.getLogger("my.credential").warning("getting a token for %s", scopes)
            return self.inner.get_token(*scopes, **kw)

        def close(self) -> None:
            self.inner.close()

    credential = ChattyCredential()
    root = logging.getLogger()
    policy = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    saved = root.level, logging.getLogger("azure").level, policy.level
    root.setLevel(logging.DEBUG)
    logging.getLogger("azure").setLevel(logging.DEBUG)
    policy.setLevel(logging.DEBUG)  # logs every request, from the engine's request threads
    h = handler_for(stand_in, tmp_path, credential=credential, flush_interval=0.05)
    other = Capture()
    root.addHandler(h)
    root.addHandler(other)
    try:
        for i in range(20):
            logging.getLogger("app").info("app record %d", i)
        wait_for(lambda: stand_in.workspace.count() >= 20, 30, "the app's rows")

        def shutdown_like() -> None:  # as logging.shutdown(): under the handler lock
            h.acquire()
            try:
                h.flush()
                h.close()
            finally:
                h.release()

        run_with_deadline(shutdown_like, 30)
    finally:
        root.removeHandler(h)
        root.removeHandler(other)
        root.setLevel(saved[0])
        logging.getLogger("azure").setLevel(saved[1])
        policy.setLevel(saved[2])
    names = {r["LoggerName"] for r in stand_in.workspace.rows()}
    assert names == {"app"}, names
    assert stand_in.workspace.count() == 20
    assert credential.calls >= 1
    assert any(r.name == "my.credential" for r in other.records)
    assert any(r.name.startswith("azure") for r in other.records)
    assert h.stats["not_queued"] >= 2


def test_refused_rows_are_kept_with_the_answer(
    stand_in: Emulator, tmp_path: Path, logger: logging.Logger
) -> None:
    h = handler_for(stand_in, tmp_path)
    logger.addHandler(h)
    logger.info("fine 1")
    logger.info("the service refuses this one %s", REJECT_MARKER)
    logger.info("fine 2")
    run_with_deadline(h.close, 30)
    assert sorted(r["Message"] for r in stand_in.workspace.rows()) == ["fine 1", "fine 2"]
    assert h.stats["sent"] == 2 and h.stats["refused"] == 1
    (refused,) = spilled(h.refused_path)
    assert REJECT_MARKER in refused["Message"]
    assert refused["Properties"]["hal"]["dead_letter"]["status"] == 400


def test_flush_at_interpreter_exit(
    emulator: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A script that never closes its handler: the atexit hook sends everything."""
    script = textwrap.dedent(
        f"""
        import logging, os
        from hal_logging import AzureMonitorHandler
        h = AzureMonitorHandler(os.environ["AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"],
                                os.environ["AZURE_MONITOR_DATA_COLLECTION_RULE_ID"],
                                flush_interval=3600, spill_path={str(tmp_path / "s.jsonl")!r})
        log = logging.getLogger("script")
        log.addHandler(h)
        log.setLevel(logging.INFO)
        for i in range(50):
            log.info("before exit %d", i)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=client_env(emulator.env()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert emulator.workspace.count() == 50, proc.stderr
    assert not (tmp_path / "s.jsonl").exists()


def test_setup_logging_on_an_azure_vm(
    stand_in: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DMI says Azure, IMDS (the stand-in's) confirms: rows carry the VM's name and the run."""
    monkeypatch.setenv(vm.DMI_DIR_ENV, str(make_dmi(tmp_path / "dmi")))
    vm.clear_cache()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        result = setup_logging(
            tmp_path / "logs",
            "run-on-vm",
            use_vm=True,
            console=False,
            azure_options={"spill_path": tmp_path / "spill.jsonl", "flush_interval": 0.05},
        )
        assert result.on_azure and result.azure_handler is not None
        logging.getLogger("harness").info("hello from the VM")
        logging.getLogger("urllib3.connectionpool").warning("quieted or not, never queued")
        wait_for(
            lambda: any(r["Message"] == "hello from the VM" for r in stand_in.workspace.rows()),
            30,
            "the VM's row",
        )
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
        vm.clear_cache()
    rows = {r["Message"]: r for r in stand_in.workspace.rows()}
    row = rows["hello from the VM"]
    assert row["VMName"] == "hal-emulated-vm" and row["RunID"] == "run-on-vm"
    assert row["LogType"] == "VMOperation"
    assert (
        "Azure Monitor logging enabled (Azure VM hal-emulated-vm, stream Custom-BenchmarkRuns_CL)"
        in rows
    )
    assert not any(r["LoggerName"].startswith("urllib3") for r in rows.values())
    file_rows = [orjson.loads(line) for line in result.log_file.read_bytes().splitlines()]
    assert any(
        r["Message"] == "hello from the VM" and r["VMName"] == "hal-emulated-vm" for r in file_rows
    )


def test_outage_backlog_is_sent_when_the_service_returns(
    stand_in: Emulator, tmp_path: Path, logger: logging.Logger
) -> None:
    """503 for a while: rows spill; the service comes back: the spill file is sent, in full."""
    stand_in.set_faults(down="503", retry_after=0.05)
    h = handler_for(stand_in, tmp_path, queue_size=20, retry_timeout=0.3, flush_interval=0.05)
    logger.addHandler(h)
    for i in range(200):
        logger.info("during the outage %d", i)
    wait_for(lambda: h.stats["failed_sends"] >= 1, 30, "a send to give up")
    assert h.stats["spilled"] >= 200 - 2 * 20  # queue_size, and one batch in flight
    stand_in.set_faults(down=None)
    for i in range(50):
        logger.info("after the outage %d", i)
    wait_for(lambda: stand_in.workspace.count() == 250, 30, "every row, backlog included")
    run_with_deadline(h.close, 30)
    stats = h.stats
    assert stats["sent"] == 250 and stats["backlog"] == 0 and stats["recovered"] == stats["spilled"]
    messages = sorted(r["Message"] for r in stand_in.workspace.rows())
    expected = [f"during the outage {i}" for i in range(200)] + [
        f"after the outage {i}" for i in range(50)
    ]
    assert messages == sorted(expected)
    assert not (tmp_path / "spill.jsonl").exists() and not h.resend_path.exists()
