"""Bearer tokens the stand-in issues and checks, signed so a restart keeps them valid.

A client caches its token for an hour; a stand-in that forgot the tokens it
issued on restart would answer 401 where Azure would not. Tokens are therefore
self-contained and HMAC-signed with a secret that lives in the workspace file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any, Final

from hal_logging import _json

AUDIENCE: Final = "https://monitor.azure.com"
_PREFIX: Final = "hal-emu"


def audience_ok(resource_or_scope: str) -> bool:
    """``https://monitor.azure.com``, with or without ``/`` or ``/.default``."""
    value = resource_or_scope.strip()
    for suffix in ("/.default", "//.default", "/"):
        if value.endswith(suffix):
            value = value[: -len(suffix)]
            break
    return value.rstrip("/") == AUDIENCE


@dataclass(frozen=True)
class TokenCheck:
    ok: bool
    code: str = ""
    message: str = ""


class TokenIssuer:
    def __init__(self, secret: bytes, lifetime: int = 3600) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def issue(
        self, *, kind: str, subject: str, audience: str = AUDIENCE, lifetime: int | None = None
    ) -> tuple[str, int]:
        """A token and its expiry (epoch seconds). ``kind``: managed-identity, service-principal, user."""
        expires = int(time.time()) + (self.lifetime if lifetime is None else lifetime)
        body: dict[str, Any] = {"exp": expires, "aud": audience, "sub": subject, "kind": kind}
        payload = base64.urlsafe_b64encode(_json.dumps(body)).rstrip(b"=")
        return f"{_PREFIX}.{payload.decode()}.{self._sign(payload)}", expires

    def check(self, authorization: str | None) -> TokenCheck:
        """Check an ``Authorization`` header as the service would."""
        if not authorization:
            return TokenCheck(False, "MissingToken", "The request has no Authorization header.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return TokenCheck(False, "InvalidToken", "Authorization must be 'Bearer <token>'.")
        parts = token.strip().split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            return TokenCheck(
                False, "InvalidToken", "The token was not issued by this identity endpoint."
            )
        payload = parts[1].encode()
        if not hmac.compare_digest(self._sign(payload), parts[2]):
            return TokenCheck(False, "InvalidToken", "The token signature is invalid.")
        try:
            body = _json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (ValueError, _json.JSONDecodeError):
            return TokenCheck(False, "InvalidToken", "The token cannot be read.")
        if not isinstance(body, dict):
            return TokenCheck(False, "InvalidToken", "The token cannot be read.")
        if float(body.get("exp", 0)) < time.time():
            return TokenCheck(False, "ExpiredToken", "The access token has expired.")
        if not audience_ok(str(body.get("aud", ""))):
            return TokenCheck(False, "InvalidAudience", f"The token audience must be {AUDIENCE}.")
        if body.get("kind") == "user":
            return TokenCheck(
                False,
                "UnsupportedAccessTokenType",
                "User tokens are not supported; use a service principal or a managed identity.",
            )
        return TokenCheck(True)
