"""Filters between parsing and batching: trust, redaction, cost control.

Placeholder until issue 7 lands: ``build_filters`` is the one entry point the
forwarder calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.model import Filter


def build_filters(config: ForwardConfig, trusted: Mapping[str, str]) -> list[Filter]:
    """The filter chain for a forwarder run, in the order records pass through it."""
    return []
