"""Give freed heap memory back to the system after a burst of work.

A forwarder in follow mode lives as long as the task. After catching up on a
backlog (a service outage, a burst of output) it has freed the batches it held,
but glibc's allocator keeps the pages: peak RSS becomes the resident size for
the rest of the run (the 20-minute soak stepped from 62 to 106 MB over ten
faults). ``malloc_trim(0)`` hands the free pages back (measured: ~6 of 8 MB
released after a 100k-row catch-up, for under 1 ms of CPU). Elsewhere (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_loaded = False


def _load() -> Callable[[int], int] | None:
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _trim = libc.malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
                _trim.restype = ctypes.c_int
            except (OSError, AttributeError):  # not glibc: nothing to trim
                _trim = None
    return _trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; True if anything was released."""
    trim = _load()
    if trim is None:
        return False
    return bool(trim(0))
