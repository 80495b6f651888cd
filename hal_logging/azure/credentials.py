"""Which Azure identity signs the requests, chosen the way a benchmark VM needs it.

The Logs Ingestion API accepts only service principals and managed identities
(a user token from ``az login`` gets 401 UnsupportedAccessTokenType, docs/facts.md §1),
so ``auto`` never falls back to developer credentials:

- ``AZURE_TENANT_ID`` + ``AZURE_CLIENT_ID`` + ``AZURE_CLIENT_SECRET`` set: that service principal;
- otherwise the VM's managed identity: user-assigned when ``AZURE_CLIENT_ID`` is
  set, else system-assigned. Token requests go to IMDS (or to
  ``AZURE_POD_IDENTITY_AUTHORITY_HOST``, which is how tests use the stand-in).

``default`` (DefaultAzureCredential, without interactive login) is there for
unusual hosts; ``managed-identity`` and ``service-principal`` force one kind.
The Azure SDK is imported only when a credential is built.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

CREDENTIAL_KINDS: Final[tuple[str, ...]] = (
    "auto",
    "managed-identity",
    "service-principal",
    "default",
)
SP_VARS: Final[tuple[str, str, str]] = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
SCOPE: Final = "https://monitor.azure.com/.default"


class CredentialConfigError(ValueError):
    """The asked-for credential cannot be built; the message says what to set."""


def resolve_kind(kind: str = "auto", env: Mapping[str, str] | None = None) -> str:
    """The concrete kind ``auto`` stands for in this environment."""
    env = os.environ if env is None else env
    if kind not in CREDENTIAL_KINDS:
        raise CredentialConfigError(
            f"unknown credential {kind!r}: choose one of {', '.join(CREDENTIAL_KINDS)}"
        )
    if kind != "auto":
        return kind
    return "service-principal" if all(env.get(v) for v in SP_VARS) else "managed-identity"


def describe(kind: str = "auto", env: Mapping[str, str] | None = None) -> str:
    """One line for messages: which identity is used (never the secret)."""
    env = os.environ if env is None else env
    concrete = resolve_kind(kind, env)
    if concrete == "service-principal":
        return f"service principal {env.get('AZURE_CLIENT_ID', '?')} (tenant {env.get('AZURE_TENANT_ID', '?')})"
    if concrete == "managed-identity":
        cid = env.get("AZURE_CLIENT_ID")
        return (
            f"user-assigned managed identity {cid}" if cid else "system-assigned managed identity"
        )
    return "DefaultAzureCredential"


def _is_loopback_url(url: str | None) -> bool:
    if not url:
        return False
    host = urllib.parse.urlsplit(url if "//" in url else f"https://{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_credential(kind: str = "auto", env: Mapping[str, str] | None = None) -> Any:
    """Build the ``azure.identity`` credential for ``kind`` (see the module docstring)."""
    env = os.environ if env is None else env
    concrete = resolve_kind(kind, env)
    try:
        import azure.identity as identity
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise CredentialConfigError(
            f"azure-identity is not installed ({exc}); install it with: pip install 'hal-logging[azure]'"
        ) from exc
    if concrete == "service-principal":
        missing = [v for v in SP_VARS if not env.get(v)]
        if missing:
            raise CredentialConfigError(
                f"--credential service-principal needs {', '.join(missing)} in the environment"
            )
        options: dict[str, Any] = {}
        authority = env.get("AZURE_AUTHORITY_HOST")
        if authority:
            options["authority"] = authority
            # A local stand-in (docs/testing.md) cannot answer Entra's instance discovery,
            # which would otherwise go to login.microsoftonline.com.
            if _is_loopback_url(authority):
                options["disable_instance_discovery"] = True
        return identity.ClientSecretCredential(
            env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"], **options
        )
    if concrete == "managed-identity":
        client_id = env.get("AZURE_CLIENT_ID") or None
        return identity.ManagedIdentityCredential(client_id=client_id)
    return identity.DefaultAzureCredential(
        exclude_interactive_browser_credential=True,
        managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None,
    )
