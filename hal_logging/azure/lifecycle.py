"""Process-wide hooks of the logging handlers: interpreter exit and fork.

At exit every live handler is closed (its rows sent, or spilled, within its
``close_timeout``), and closes that had to finish in the background are
waited for. In a forked child every live handler starts over
(``_after_fork_in_child``): the parent's queue, locks, thread and engine (its
sockets) are not the child's, and rows the parent had queued stay the
parent's to send.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (its exit hook must be registered before ours)
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["close_later", "holding_logging_lock", "register", "unregister"]


def holding_logging_lock() -> bool:
    """Does this thread hold ``logging``'s module lock (an RLock)?"""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    try:
        return bool(is_owned()) if is_owned is not None else False
    except Exception:
        return False


class _Closable(Protocol):
    def close(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
#: close() calls finishing in the background (see close_later); exit waits for them.
_closers: list[tuple[threading.Thread, float]] = []


def register(handler: _Closable) -> None:
    """Close ``handler`` at exit, and rebuild its state in a forked child."""
    _live.add(handler)


def unregister(handler: _Closable) -> None:
    _live.discard(handler)


def close_later(shutdown: Callable[[], None], timeout: float) -> None:
    """Run ``shutdown`` in a thread of its own; exit waits for it (at most ``timeout`` + 1 s).

    For a close called while logging's module lock is held (``dictConfig``
    replacing handlers): the sender may need that lock, so waiting there
    could only time out.
    """
    closer = threading.Thread(target=shutdown, name="hal-logging-close", daemon=True)
    _closers.append((closer, timeout))
    closer.start()


def _reinit_after_fork() -> None:
    _closers.clear()
    for handler in list(_live):
        try:
            handler._after_fork_in_child()
        except Exception:
            pass


def _close_all_at_exit() -> None:
    """Flush and close every live handler, each bounded by its own close_timeout.

    Runs before ``logging.shutdown`` (registered earlier with ``atexit``, which
    is last-in, first-out); closing twice is harmless.
    """
    for handler in list(_live):
        try:
            handler.close()
        except Exception:
            pass
    while _closers:
        closer, timeout = _closers.pop()
        closer.join(timeout + 1.0)


os.register_at_fork(after_in_child=_reinit_after_fork)
# Interpreter exit. ``concurrent.futures`` refuses new work once its own exit hook
# has run, and the engine sends through a thread pool; that hook is registered
# with ``threading._register_atexit``, whose hooks run (last-in, first-out) when
# the main thread ends, before ``atexit``'s. So ours goes there too, registered
# after concurrent.futures' (imported above), to run before it. ``atexit`` is the
# fallback, and a second chance for records logged later (closing is idempotent;
# rows logged after close go to the spill file).
_register_threading_atexit = getattr(threading, "_register_atexit", None)
if _register_threading_atexit is not None:
    try:
        _register_threading_atexit(_close_all_at_exit)
    except RuntimeError:  # already shutting down
        pass
atexit.register(_close_all_at_exit)
