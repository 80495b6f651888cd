"""What a secret looks like: the credential shapes, their triggers, secret names.

The data every redactor works from (see :mod:`hal_logging.redaction`); no state,
nothing compiled until used, so importing it costs next to nothing.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from hal_logging.schema import CONTEXT_COLUMNS

MIN_AUTO_VALUE: Final = 8
MIN_NAMED_VALUE: Final = 4

#: Variable names whose values are secrets by default (case-insensitive substring).
SECRET_NAME_RE: Final = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PWD|CREDENTIAL|AUTH|PRIVATE|SAS|CONNECTION_STRING|COOKIE|SESSION",
    re.IGNORECASE,
)
#: Variables that are never secrets even in wrap mode's ``-e`` list: the run context.
CONTEXT_ENV: Final = frozenset(c.env for c in CONTEXT_COLUMNS if c.env)
NEVER_SECRET: Final = CONTEXT_ENV | {
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TERM", "SHELL", "PWD", "OLDPWD",
    "HOSTNAME", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV",
    "HAL_LOGGING_REDACT_ENV", "HAL_LOG_FORMAT", "HAL_LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT",
}  # fmt: skip

#: Properties keys whose string values are secrets as a whole.
SECRET_KEY_RE: Final = re.compile(
    r"passw(?:or)?d|secret|api[_-]?key|private[_-]?key|credential|token$|^authorization$|^cookie$",
    re.IGNORECASE,
)

_B = r"(?<![A-Za-z0-9_\-])"  # token boundary on the left

#: (kind, regex). A regex may name a group ``v``: only that part is replaced
#: and the rest (the prefix saying what the value is) is kept.
PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?P<v>[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z))",
    ),
    ("anthropic_key", _B + r"sk-ant-[A-Za-z0-9_\-]{16,}"),
    ("openai_key", _B + r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{16,}"),
    ("github_token", _B + r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("aws_access_key_id", r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    (
        "aws_secret_key",
        r"(?i:aws_?secret_?access_?key|aws_?secret)[\"']?\s*[=:]\s*[\"']?(?P<v>[A-Za-z0-9/+=]{16,})",
    ),
    (
        "azure_key",
        r"(?:AccountKey|SharedAccessKey|SharedAccessSignature|SharedSecretValue)\s*=\s*(?P<v>[^;\s\"'<>]+)",
    ),
    ("sas_signature", r"[?&;]sig=(?P<v>[A-Za-z0-9%/+=_\-]{8,})"),
    ("jwt", _B + r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"),
    (
        "bearer_token",
        r"(?i:\bbearer)\s+(?P<v>[A-Za-z0-9._~+/\-]{8,}=*)",
    ),
    (
        "basic_auth",
        r"(?i:authorization\b[\"']?\s*[:=]\s*[\"']?basic)\s+(?P<v>[A-Za-z0-9+/]{6,}=*)",
    ),
    (
        "url_password",
        r"://[^\s/:@\"'<>]*:(?P<v>[^\s/@\"'<>]+)@",
    ),
    (
        "password",
        r"(?i:\b(?:password|passwd|api[_-]?key|apikey|client[_-]?secret|secret[_-]?key|access[_-]?token))"
        r"[\"']?\s*[=:]\s*[\"']?(?P<v>[^\s\"',;&<>\[]{6,})",
    ),
)

#: Lower-case trigger substrings -> the shapes they may announce. Every match of a
#: shape (and every key SECRET_KEY_RE matches) contains one of its triggers, so a
#: string containing no trigger needs no regular expression at all; one that
#: does runs only the expressions of the kinds its triggers announce.
SHAPE_TRIGGERS: Final[dict[bytes, tuple[str, ...]]] = {
    b"private": ("private_key",),
    b"sk-": ("anthropic_key", "openai_key"),
    **{t: ("github_token",) for t in (b"ghp_", b"gho_", b"ghs_", b"ghu_", b"ghr_", b"github_pat_")},
    b"akia": ("aws_access_key_id",),
    b"asia": ("aws_access_key_id",),
    b"secret": ("aws_secret_key", "password"),
    b"accountkey": ("azure_key",),
    b"sharedaccess": ("azure_key",),
    b"sharedsecret": ("azure_key",),
    b"sig=": ("sas_signature",),
    b"eyj": ("jwt",),
    b"bearer": ("bearer_token",),
    b"authorization": ("basic_auth",),
    b"://": ("url_password",),
    **{t: ("password",) for t in (b"passw", b"api_key", b"api-key", b"apikey")},
    **{t: ("password",) for t in (b"access_token", b"access-token", b"accesstoken")},
    # keys only (SECRET_KEY_RE): no text expression to run
    b'token"': (),
    b"credential": (),
    b"cookie": (),
}

KIND_ORDER: Final = {kind: i for i, (kind, _) in enumerate(PATTERNS)}
_PATTERN_OF: Final = dict(PATTERNS)


@functools.cache
def shape_re(kind: str) -> re.Pattern[str]:
    """The compiled expression of a shape, compiled when first needed: most runs
    never need most of them (the triggers say when), and compiling them all costs
    a few ms at every forwarder start."""
    return re.compile(_PATTERN_OF[kind])


ENV_KIND: Final = "env"


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret."""
    return name not in NEVER_SECRET and SECRET_NAME_RE.search(name) is not None
