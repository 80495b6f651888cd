"""AzureMonitorHandler mechanics: never blocks, never raises, never loops, survives fork.

These tests drive the handler with small in-process senders (a list, a sender
that blocks until released, one that logs while sending) to reach states the
real service cannot be forced into on cue. End-to-end delivery with the real
SDK against the stand-in is in test_vm_handler_emulator.py.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from hal_logging import schema
from hal_logging.azure.handler import AzureMonitorHandler
from tests.waiting import wait_for


class ListSender:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.calls = 0
        self.closed = False

    def send(self, lines: Sequence[bytes], deadline: Any = None) -> None:
        self.calls += 1
        for line in lines:
            assert line.startswith(schema.WIRE_PREFIX)
            row = orjson.loads(line)
            del row["_hal"]
            self.rows.append(row)

    def close(self) -> None:
        self.closed = True


class BlockedSender(ListSender):
    """send() blocks until released: a service that never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, lines: Sequence[bytes], deadline: Any = None) -> None:
        self.entered.set()
        self.release.wait(60)
        raise ConnectionError("service never answered")


class FailingSender(ListSender):
    def send(self, lines: Sequence[bytes], deadline: Any = None) -> None:
        self.calls += 1
        raise ConnectionError("connection refused")


class ChattySender(ListSender):
    """Logs while sending, as azure-core and azure-identity do."""

    def send(self, lines: Sequence[bytes], deadline: Any = None) -> None:
        logging.getLogger("my.credential").warning("refreshing token for %d rows", len(lines))
        logging.getLogger("azure.core.pipeline").info("POST /dataCollectionRules")
        logging.getLogger("urllib3.connectionpool").debug("Starting new HTTPS connection")
        super().send(lines)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    lg = logging.getLogger()
    saved = list(lg.handlers), lg.level
    lg.setLevel(logging.DEBUG)
    yield lg
    for h in list(lg.handlers):
        if h not in saved[0]:
            lg.removeHandler(h)
    lg.setLevel(saved[1])


def make(tmp_path: Path, sender: Any, **kw: Any) -> AzureMonitorHandler:
    kw.setdefault("flush_interval", 3600.0)  # only triggers send, unless a test says otherwise
    kw.setdefault("close_timeout", 5.0)
    return AzureMonitorHandler(
        "https://dce.invalid", "dcr-test", sender=sender, spill_path=tmp_path / "spill.jsonl", **kw
    )


def attached(root: logging.Logger, tmp_path: Path, sender: Any, **kw: Any) -> AzureMonitorHandler:
    """:func:`make`'s handler, added to ``root``."""
    h = make(tmp_path, sender, **kw)
    root.addHandler(h)
    return h


def spilled(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    assert all(line.startswith(schema.WIRE_PREFIX) for line in lines)
    return [orjson.loads(line) for line in lines]


def run_with_deadline(fn: Any, deadline: float = 10.0) -> None:
    """Run fn in a thread; fail if it is still running after the deadline."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(deadline)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {deadline}s"
    if errors:
        raise errors[0]


def test_rows_have_the_contract_shape(tmp_path: Path, root: logging.Logger) -> None:
    sender = ListSender()
    h = attached(root, tmp_path, sender, context={"run_id": "r1", "task_id": "t1"})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("harness.vm").exception("task failed", extra={"attempt": 3})
    assert h.flush()
    h.close()
    (row,) = sender.rows
    assert list(row) == list(schema.COLUMN_NAMES)
    assert row["Level"] == "ERROR" and row["Message"] == "task failed"
    assert row["RunID"] == "r1" and row["TaskID"] == "t1" and row["LogType"] == "VMOperation"
    props = row["Properties"]
    assert props["attempt"] == 3
    assert props["exception"]["type"] == "ValueError" and "boom" in props["exception"]["stacktrace"]
    assert props["hal"]["record_id"] and props["hal"]["stream"] in schema.STREAMS
    assert sender.closed


def test_error_sends_at_once_and_batch_size_triggers(tmp_path: Path, root: logging.Logger) -> None:
    sender = ListSender()
    h = attached(root, tmp_path, sender, batch_size=10)
    log = logging.getLogger("app")
    log.info("waits for a trigger")
    log.error("urgent")  # flush_interval is an hour: only the ERROR trigger can send these
    wait_for(lambda: len(sender.rows) == 2, 10, "the ERROR trigger")
    for i in range(10):
        log.info("row %d", i)
    wait_for(lambda: len(sender.rows) == 12, 10, "the batch_size trigger")
    h.close()
    assert h.stats["sent"] == 12 and h.stats["spilled"] == 0


def test_timer_sends(tmp_path: Path, root: logging.Logger) -> None:
    sender = ListSender()
    h = attached(root, tmp_path, sender, flush_interval=0.05)
    logging.getLogger("app").info("only the timer sends this")
    wait_for(lambda: len(sender.rows) == 1, 10, "the timer")
    h.close()


def test_blocked_service_emit_returns_and_close_ends_within_timeout(
    tmp_path: Path, root: logging.Logger
) -> None:
    sender = BlockedSender()
    h = attached(root, tmp_path, sender, queue_size=50, close_timeout=0.5)
    log = logging.getLogger("app")
    log.error("first: wakes the sender, which then hangs")
    assert sender.entered.wait(10)

    def burst() -> None:
        for i in range(999):
            log.info("while the service hangs %d", i)

    run_with_deadline(burst)  # 999 records, none waits for the hung sender
    stats = h.stats
    assert stats["queued"] == 50 and stats["spilled"] == 999 - 50 and stats["errors"] == 0
    run_with_deadline(h.close, deadline=0.5 + 10)
    # Nothing lost: the in-flight row and the queue were spilled at close.
    rows = spilled(tmp_path / "spill.jsonl")
    assert len(rows) == 1000 and h.stats["spilled"] == 1000 and h.stats["sent"] == 0
    assert len({r["Properties"]["hal"]["record_id"] for r in rows}) == 1000
    log.info("after close")  # goes to the spill file too, never raises
    assert len(spilled(tmp_path / "spill.jsonl")) == 1001
    sender.release.set()


def test_failed_sends_spill_and_say_so(
    tmp_path: Path, root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    sender = FailingSender()
    h = attached(root, tmp_path, sender)
    for i in range(3):
        logging.getLogger("app").error("e%d", i)
    wait_for(lambda: h.stats["spilled"] == 3, 10, "failed rows to be spilled")
    h.close()
    assert [r["Message"] for r in spilled(tmp_path / "spill.jsonl")] == ["e0", "e1", "e2"]
    err = capsys.readouterr().err
    assert str(tmp_path / "spill.jsonl") in err and "hal-logging-forward" in err
    assert h.stats["failed_sends"] >= 1 and h.stats["sent"] == 0


def test_sender_logging_does_not_loop(tmp_path: Path, root: logging.Logger) -> None:
    sender = ChattySender()
    h = make(tmp_path, sender)
    other = Capture()
    root.addHandler(h)
    root.addHandler(other)
    for i in range(5):
        logging.getLogger("app").error("e%d", i)
    wait_for(lambda: len(sender.rows) == 5, 10, "sends")
    assert h.flush()
    h.close()
    assert {r["LoggerName"] for r in sender.rows} == {"app"}
    assert h.stats["not_queued"] >= sender.calls * 2
    # The sender's own records still reach the other handlers.
    assert any(r.name == "my.credential" for r in other.records)


def test_ignored_loggers_from_any_thread(tmp_path: Path, root: logging.Logger) -> None:
    sender = ListSender()
    h = attached(root, tmp_path, sender)
    logging.getLogger("azure.identity").warning("token")
    logging.getLogger("urllib3").warning("retry")
    logging.getLogger("azurefoo").warning("not an azure logger")  # prefix match is by dotted name
    assert h.flush()
    h.close()
    assert [r["LoggerName"] for r in sender.rows] == ["azurefoo"]


def test_flush_while_logging_shutdown_holds_the_handler_lock(
    tmp_path: Path, root: logging.Logger
) -> None:
    """logging.shutdown() calls flush()/close() holding the handler's lock; the sender logs."""
    sender = ChattySender()
    h = attached(root, tmp_path, sender)
    for i in range(20):
        logging.getLogger("app").info("r%d", i)

    def shutdown_like() -> None:
        h.acquire()
        try:
            assert h.flush(5)
            h.close()
        finally:
            h.release()

    run_with_deadline(shutdown_like)
    assert len(sender.rows) == 20


def test_emit_never_raises(tmp_path: Path) -> None:
    sender = ListSender()
    h = make(tmp_path, sender)
    log = logging.getLogger("isolated.app")  # away from pytest's capture, which would raise
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(h)

    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        __str__ = __repr__

    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    log.info("%d items", "not a number")
    log.info(Evil())
    log.info("fields", extra={"cyclic": cyclic, "evil": Evil(), "nan": float("nan")})
    log.info("\udcff lone surrogate")
    assert h.flush()
    h.close()
    log.removeHandler(h)
    assert len(sender.rows) == 4 and h.stats["errors"] == 0
    assert sender.rows[0]["Message"] == "%d items"
    assert sender.rows[0]["Properties"]["format_error"]


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"):
        AzureMonitorHandler("", "dcr-1", sender=ListSender())
    with pytest.raises(ValueError, match="batch_size"):
        AzureMonitorHandler("https://x", "dcr-1", sender=ListSender(), batch_size=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_queue_and_sender(tmp_path: Path, root: logging.Logger) -> None:
    out = tmp_path / "child-rows.jsonl"

    class FileSender(ListSender):
        def send(self, lines: Sequence[bytes], deadline: Any = None) -> None:
            super().send(lines)
            with open(out, "ab") as f:
                f.writelines(line + b"\n" for line in lines)

    sender = FileSender()
    h = attached(root, tmp_path, sender)
    log = logging.getLogger("app")
    log.error("parent before fork")
    wait_for(lambda: len(sender.rows) == 1, 10, "the parent's first row")
    out.unlink()
    pid = os.fork()
    if pid == 0:  # child: log, flush through a fresh sender thread, exit
        code = 1
        try:
            for i in range(10):
                log.info("child %d", i)
            code = 0 if h.flush(10) and h.stats["emitted"] == 10 else 2
            h.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["Message"] for r in child_rows] == [f"child {i}" for i in range(10)]
    parent_id = sender.rows[0]["Properties"]["hal"]["record_id"]
    child_ids = {r["Properties"]["hal"]["record_id"] for r in child_rows}
    assert parent_id.rsplit("-", 1)[0] not in {c.rsplit("-", 1)[0] for c in child_ids}
    log.error("parent after fork")
    assert h.flush()
    h.close()
    assert [r["Message"] for r in sender.rows] == ["parent before fork", "parent after fork"]


def test_dictconfig_replacing_the_handler_does_not_stall(tmp_path: Path) -> None:
    """dictConfig closes old handlers holding logging's lock; the sender needs that lock."""
    import logging.config

    class LockingSender(ListSender):
        def send(self, lines: Sequence[bytes], deadline: Any = None) -> None:
            logging.getLogger(f"created.while.sending.{self.calls}")  # takes logging's lock
            super().send(lines)

    sender = LockingSender()
    h = make(tmp_path, sender)
    log = logging.getLogger("dictconfig.app")
    log.setLevel(logging.INFO)
    log.addHandler(h)
    for i in range(30):
        log.info("queued %d", i)

    def reconfigure() -> None:
        with logging._lock:  # type: ignore[attr-defined]  # as dictConfig does around shutdown
            logging.shutdown([weakref.ref(h)])

    run_with_deadline(reconfigure, 5)  # returns at once, not after close_timeout
    wait_for(lambda: len(sender.rows) == 30, 10, "the background close to send the rows")
    log.removeHandler(h)
    assert h.stats["spilled"] == 0
