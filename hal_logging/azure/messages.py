"""What to fix, said plainly: the texts for answers that retrying cannot change.

401, 403 and 404 from the Logs Ingestion API, and a credential that cannot get
a token, each have a usual cause an operator can fix in minutes once told
which. Every text also says that nothing undelivered was dropped, so a run
stopped by one of them is simply run again.
"""

from __future__ import annotations

__all__ = ["credential_message", "fatal_message", "no_dead_letter_message", "sdk_missing_message"]


def fatal_message(
    status: int,
    code: str,
    message: str,
    *,
    credential: str,
    rule_id: str,
    endpoint: str,
    stream: str,
) -> str:
    """401 (token refused), 403 (no role on the rule), else 404 (unknown rule, stream or endpoint)."""
    said = f"{status} {code}: {message}".strip()
    if status == 401:
        return (
            f"Azure Monitor refused the token of the {credential} ({said}). "
            "Use a managed identity or a service principal: user tokens (az login) are refused "
            "(UnsupportedAccessTokenType). Check the tenant and that the identity exists. "
            "Nothing undelivered was dropped; run again once fixed."
        )
    if status == 403:
        return (
            f"The {credential} may not write to data collection rule {rule_id} "
            f"({said}). Give it the 'Monitoring Metrics Publisher' role on that rule; a new role "
            "assignment can take up to 30 minutes to apply. Nothing undelivered was dropped; run again then."
        )
    return (
        f"Azure Monitor at {endpoint} does not know rule {rule_id!r} or stream {stream!r} "
        f"({said}). The rule id must be the DCR's immutable id (dcr-...), not its name or resource id; "
        "the stream must be declared in that DCR (Custom-...); the endpoint must be the rule's data "
        "collection endpoint. Nothing undelivered was dropped; run again once fixed."
    )


def credential_message(exc: Exception, credential: str) -> str:
    """The credential could not get a token at all: which kinds of identity work where."""
    first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
    return (
        f"Could not get a token for Azure Monitor with the {credential}: {first}. "
        "On an Azure VM, assign a managed identity (a user-assigned one: set AZURE_CLIENT_ID); "
        "elsewhere set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal. "
        "Nothing undelivered was dropped."
    )


def sdk_missing_message(exc: ImportError) -> str:
    return (
        f"the Azure SDK is not installed ({exc}); install it with: pip install 'hal-logging[azure]'"
    )


def no_dead_letter_message(count: int, answer: str) -> str:
    return (
        f"Azure Monitor refused {count} row(s) ({answer}) and no dead-letter "
        "file is configured; they are kept undelivered"
    )
