"""Secret redaction, below its users: the forwarder's filter and the container's handler.

Two kinds of secret are replaced, each by a marker naming what it was, and the
row is always kept:

- **Known values**: the values of environment variables the forwarder was told
  about (``--redact-env NAME``, ``HAL_LOGGING_REDACT_ENV=A,B``), in wrap mode the
  values given to the command with ``-e NAME=VALUE``, and (on by default) the
  values of VM or command variables whose names look secret (``*KEY*``,
  ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ...). Marker ``[REDACTED:env:NAME]``.
  Values shorter than :data:`MIN_AUTO_VALUE` characters (8) found through a
  name or ``-e`` are skipped: replacing ``1`` or ``true`` everywhere would wreck
  the logs and protect nothing. A variable named explicitly is redacted from
  :data:`MIN_NAMED_VALUE` (4) characters. The JSON-escaped spelling of a value is
  redacted too (a value with ``"`` or ``\\`` printed inside a JSON text).
- **Credential shapes** (:data:`PATTERNS`): OpenAI / Anthropic keys, GitHub
  tokens, AWS key ids and secret keys, Azure connection-string keys and SAS
  signatures, JWTs, ``Authorization: Bearer/Basic`` values, passwords in URLs
  (``scheme://user:pass@``), ``password=...``-style assignments, and private-key
  blocks, also when a block is printed line by line (each line its own row).
  Marker ``[REDACTED:<kind>]``; where a prefix says what the value is
  (``AccountKey=``, ``Bearer``, the user in a URL) the prefix is kept.
- **Secret-named fields**: a string value under a Properties key such as
  ``password``, ``api_key``, ``client_secret`` or ``token`` is replaced whole
  (``[REDACTED:secret_field]``).

Applied to Message, LoggerName and the other string columns the container may
fill, and to every key and string value inside Properties (tracebacks in
``Properties.exception`` included), recursively. A Message that grew past the
64 KB field limit is cut again.

Modules: :mod:`.patterns` (the shapes, their triggers, secret names),
:mod:`.env` (which variables' values to redact), :mod:`.redactor` (the
:class:`Redactor`). The forwarder's filter step, with its per-chunk pre-scan, is
:mod:`hal_logging.pipeline.filters.redact`. Importing this package loads no
extension: the Aho-Corasick scanner is imported when a :class:`Redactor` is built.
"""

from __future__ import annotations

from hal_logging.redaction.env import RedactionPlan, plan_env_values
from hal_logging.redaction.patterns import (
    MIN_AUTO_VALUE,
    MIN_NAMED_VALUE,
    PATTERNS,
    SECRET_KEY_RE,
    SECRET_NAME_RE,
    SHAPE_TRIGGERS,
    looks_secret,
    marker,
)
from hal_logging.redaction.redactor import Redactor

__all__ = [
    "MIN_AUTO_VALUE",
    "MIN_NAMED_VALUE",
    "PATTERNS",
    "SECRET_KEY_RE",
    "SECRET_NAME_RE",
    "SHAPE_TRIGGERS",
    "RedactionPlan",
    "Redactor",
    "looks_secret",
    "marker",
    "plan_env_values",
]
