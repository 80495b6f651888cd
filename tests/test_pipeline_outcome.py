"""Where a run's undelivered rows are kept, and the delivery outcome (pipeline.outcome)."""

from __future__ import annotations

from hal_logging.pipeline.outcome import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNDELIVERED,
    delivery_outcome,
    exit_status,
    where_kept,
)


def test_wrap_mode_keeps_rows_in_its_spool_and_raw_log() -> None:
    kept = where_kept("wrap", prog="fwd", spool=("/s.jsonl", 3), raw_log="/raw.log")
    assert kept[0].startswith("/s.jsonl (3 rows as wire lines)")
    assert "`fwd --resend /s.jsonl`" in kept[0]
    assert kept[1] == "/raw.log (the command's raw output)"
    assert where_kept("wrap", prog="fwd", spool=("/s.jsonl", 0)) == []


def test_container_and_files_are_resumed_from_their_checkpoints() -> None:
    (line,) = where_kept("container", prog="fwd", container="c1", container_checkpoint="/c.ck")
    assert (
        line
        == "the log of container c1 from its checkpoint /c.ck: rerun the same command to resume"
    )
    (line,) = where_kept("files", prog="fwd", checkpoints={"a.log": "/a.ck"})
    assert line.startswith("a.log from its checkpoint /a.ck")
    (line,) = where_kept("follow", prog="fwd")
    assert "no checkpoint" in line


def test_kept_rows_come_before_an_unreadable_input() -> None:
    kept = ["x"]
    d = delivery_outcome(incomplete=True, unreadable=True, undelivered=2, kept=kept)
    assert (d.complete, d.status, d.undelivered, d.where_kept) == (False, EXIT_UNDELIVERED, 2, kept)
    assert d.where_kept is kept  # the summary's list, not a copy
    assert delivery_outcome(incomplete=False, unreadable=True, undelivered=0, kept=[]).status == (
        EXIT_INPUT
    )
    d = delivery_outcome(incomplete=False, unreadable=False, undelivered=0, kept=[])
    assert d.complete and d.status == EXIT_OK
    assert exit_status("auto", 3, d) == 3
