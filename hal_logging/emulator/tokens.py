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
#: Blob Storage (issue 16): Azurite reads the bearer token as a JWT and checks its
#: claims (audience, issuer prefix, nbf/exp), not its signature.
STORAGE_AUDIENCE: Final = "https://storage.azure.com"
STORAGE_TENANT: Final = "00000000-0000-4000-8000-00000000e1e1"
STORAGE_ISSUER: Final = f"https://sts.windows.net/{STORAGE_TENANT}/"


def is_storage(resource_or_scope: str) -> bool:
    value = resource_or_scope.strip()
    for suffix in ("/.default", "//.default", "/"):
        if value.endswith(suffix):
            value = value[: -len(suffix)]
            break
    return value.rstrip("/") == STORAGE_AUDIENCE


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
        #: Issuer of storage tokens; another value makes Azurite refuse them (tests).
        self.storage_issuer = STORAGE_ISSUER

    def _storage_jwt(self, subject: str, expires: int) -> str:
        """A JWT with the claims a storage service checks (signed with HS256, unchecked)."""
        now = int(time.time())

        def b64(obj: dict[str, Any]) -> bytes:
            return base64.urlsafe_b64encode(_json.dumps(obj)).rstrip(b"=")

        head = b64({"alg": "HS256", "typ": "JWT"})
        body = b64(
            {
                "aud": STORAGE_AUDIENCE,
                "iss": self.storage_issuer,
                "iat": now - 60,
                "nbf": now - 60,
                "exp": expires,
                "oid": subject,
                "sub": subject,
                "tid": STORAGE_TENANT,
                "appid": subject,
            }
        )
        sig = base64.urlsafe_b64encode(
            hmac.new(self._secret, head + b"." + body, hashlib.sha256).digest()
        ).rstrip(b"=")
        return (head + b"." + body + b"." + sig).decode()

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def issue(
        self, *, kind: str, subject: str, audience: str = AUDIENCE, lifetime: int | None = None
    ) -> tuple[str, int]:
        """A token and its expiry (epoch seconds). ``kind``: managed-identity, service-principal, user."""
        expires = int(time.time()) + (self.lifetime if lifetime is None else lifetime)
        if is_storage(audience):  # issue 16: a token Azurite (Blob Storage) accepts
            return self._storage_jwt(subject, expires), expires
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
