"""Deterministic sampling for chatty loggers: ``--sample LOGGER=RATE``.

RATE is the share kept (0 to 1; ``10%`` also accepted). Whether a row is kept
depends only on its ``Properties.hal.record_id`` (stable for the same source
bytes), so re-sending after a crash keeps exactly the same rows and dry runs
predict real runs. WARNING and above are always kept. The logger is matched
by prefix in the dotted hierarchy (``--sample httpx=0.1`` covers
``httpx._client``); ``*`` samples every logger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from hal_logging.pipeline.filters.levels import WARNING, FilterConfigError, LoggerMap, level_of
from hal_logging.pipeline.model import Filter, Record
from hal_logging.schema import HAL_RECORD_ID, PROP_HAL


def parse_rate(value: str | float, logger: str = "") -> float:
    """``0.1``, ``"0.1"``, ``"10%"`` -> 0.1; FilterConfigError outside [0, 1]."""
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            rate = float(value.strip()[:-1]) / 100
        else:
            rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise FilterConfigError(
            f"--sample {logger}={value}: the rate must be a number from 0 to 1 (or a percentage)"
        )
    return rate


def record_fraction(record: Record) -> float:
    """A number in [0, 1) fixed by the record's id (its source position when it has none)."""
    props = record.row.get("Properties")
    hal = props.get(PROP_HAL) if isinstance(props, dict) else None
    rid = hal.get(HAL_RECORD_ID) if isinstance(hal, dict) else None
    key = rid if isinstance(rid, str) and rid else f"{record.source}:{record.stream}:{record.start}"
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SampleFilter(Filter):
    """Stats: ``dropped``, ``kept_sampled``, ``dropped:<logger rule>``."""

    name = "sample"

    def __init__(self, rates: Mapping[str, str | float]) -> None:
        super().__init__()
        parsed = {name: parse_rate(rate, name) for name, rate in rates.items()}
        self.rates: LoggerMap[float] = LoggerMap(parsed)

    def process(self, record: Record) -> Iterable[Record]:
        row = record.row
        logger = row.get("LoggerName")
        rate = self.rates.get(logger if isinstance(logger, str) else "")
        if rate is None or rate >= 1.0 or level_of(row) >= WARNING:
            return (record,)
        if rate > 0.0 and record_fraction(record) < rate:
            self.count("kept_sampled")
            return (record,)
        self.count("dropped")
        return ()
