"""The retry policy: which answers are retried, split or final, and how waits meet the deadline."""

from __future__ import annotations

import threading
import time

import pytest

from hal_logging.azure import retry


def test_which_answers_split_retry_or_stop() -> None:
    for status in (400, 413, 409, 422):
        assert retry.should_split(status), status
    others: list[int | None] = [*retry.RETRY_STATUS, *retry.FATAL_STATUS, None, 200, 500]
    for other in others:
        assert not retry.should_split(other), other
    assert not retry.RETRY_STATUS & retry.FATAL_STATUS


def test_backoff_grows_jittered_and_capped() -> None:
    for attempt in range(12):
        cap = min(30.0, 0.5 * 2**attempt)
        for _ in range(20):
            assert cap / 2 <= retry.backoff(attempt, 0.5, 30.0) <= cap


def test_deadline_forms() -> None:
    assert retry.deadline_fn(None, None)() is None
    assert retry.deadline_fn(12.5, 1.0)() == 12.5  # a given deadline wins over the window
    before = time.monotonic()
    end = retry.deadline_fn(None, 60.0)()
    assert end is not None and before + 60.0 <= end <= time.monotonic() + 60.0
    moving: list[float | None] = [None]
    fn = retry.deadline_fn(lambda: moving[0], 5.0)
    assert fn() is None
    moving[0] = 3.0  # re-read: a drain may set it later
    assert fn() == 3.0


def test_wait_gives_up_at_once_when_the_deadline_comes_first() -> None:
    never = threading.Event()
    assert retry.wait(1000.0, lambda: time.monotonic() + 1.0, never) is False
    assert retry.wait(0.0, lambda: time.monotonic() - 1.0, never) is False
    assert retry.wait(0.0, lambda: None, never) is True


def test_wait_is_cancelled_by_a_failed_sibling() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(retry.Cancelled):
        retry.wait(1000.0, lambda: None, cancel)
