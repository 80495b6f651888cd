"""Placeholder: being written (issue 2)."""
from typing import Any


def configure(**overrides: Any) -> None:
    raise NotImplementedError


def bind(**fields: Any) -> Any:
    raise NotImplementedError


def unbind(*names: str) -> None:
    raise NotImplementedError


def get_logger(name: str | None = None) -> Any:
    raise NotImplementedError
