"""Placeholder: being written (issue 2)."""
import logging


class JsonFormatter(logging.Formatter):
    pass


class ConsoleFormatter(logging.Formatter):
    pass
