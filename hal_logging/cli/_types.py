"""Argument types the commands share: numbers with a lower bound, and byte sizes.

Each raises ``argparse.ArgumentTypeError`` with a message that names the value
and what would be accepted, so a command's usage error is one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

_SIZE_SUFFIXES = (("KB", 1000), ("MB", 10**6), ("GB", 10**9), ("K", 1024), ("M", 1024**2), ("G", 1024**3))


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def float_at_least(low: float, *, strict: bool = False) -> Callable[[str], float]:
    """A float ``>= low`` (``> low`` when ``strict``)."""

    def parse(text: str) -> float:
        v = float(_number(text, float))
        if v < low or (strict and v == low):
            bound = f"more than {low:g}" if strict else ("0 or more" if low == 0 else f"at least {low:g}")
            raise argparse.ArgumentTypeError(f"must be {bound}: {text!r}")
        return v

    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """A whole number ``>= low``."""

    def parse(text: str) -> int:
        v = int(_number(text, int))
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {text!r}")
        return v

    return parse


def byte_size(text: str) -> int:
    """``500000``, ``1MB`` (10^6), ``64K`` (1024): a positive number of bytes."""
    t = text.strip().upper()
    mult = 1
    for suffix, m in _SIZE_SUFFIXES:
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        v = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500000, 1MB, 64K)") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


__all__ = ["byte_size", "float_at_least", "int_at_least"]
