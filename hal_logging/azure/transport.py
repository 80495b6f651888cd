"""One request to the Logs Ingestion API through the real SDK, and what its answer means.

``LogsIngestionClient.upload(rule, stream, BytesIO(gzip))`` sends our bytes as
they are. Chosen over ``upload(list)`` by measurement (benchmarks/azure.py):
the list path re-serialises every row twice with the stdlib ``json`` and
compresses at level 9. The client is built on first use, so that importing
this module never imports the Azure SDK.

Every way a request can end becomes an :class:`Outcome` (never an exception,
except DeliveryError when the SDK is missing or the credential is misconfigured):
accepted; answered with a status (and the service's error code, message and
``Retry-After``); not sent (connect failed: safe to retry); or sent with the
answer lost (``unknown``: a retry may duplicate rows, which carry
``Properties.hal.record_id`` for de-duplication).
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hal_logging import _json
from hal_logging.azure import credentials as creds
from hal_logging.azure import messages
from hal_logging.azure.retry import FATAL_STATUS
from hal_logging.delivery import DeliveryError

__all__ = ["Outcome", "Transport", "build_client"]


@dataclass
class Outcome:
    """How one request ended (see the module docstring)."""

    ok: bool = False
    status: int | None = None
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    unknown: bool = False
    fatal_message: str | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.status is not None:
            return f"{self.status} {self.code}: {self.message[:200]}".strip()
        return self.detail or "no answer"


def build_client(endpoint: str, credential: Any, max_in_flight: int) -> Any:
    """A ``LogsIngestionClient`` for ``endpoint``: no SDK retries, one pooled ``requests`` session.

    ``credential`` is a TokenCredential or a kind for
    :func:`hal_logging.azure.credentials.make_credential`.
    """
    try:
        from azure.core.pipeline.transport import RequestsTransport
        from azure.monitor.ingestion import LogsIngestionClient
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise DeliveryError(messages.sdk_missing_message(exc), fatal=True) from exc
    import requests

    for name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # per-request INFO lines would flood the forwarder's log
            logger.setLevel(logging.WARNING)
    if isinstance(credential, str):
        try:
            credential = creds.make_credential(credential)
        except creds.CredentialConfigError as exc:
            raise DeliveryError(str(exc), fatal=True) from exc
    session = requests.Session()
    pool = max(4, max_in_flight * 2)
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # What requests reads from the environment on every request (proxies
    # for this endpoint, honouring NO_PROXY; REQUESTS_CA_BUNDLE or
    # CURL_CA_BUNDLE; ~/.netrc), read once: measured ~0.4 ms of CPU per
    # request otherwise, for settings that do not change while we run.
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    verify: bool | str = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.trust_env = False
    return LogsIngestionClient(
        endpoint,
        credential,
        retry_total=0,  # we retry ourselves (hal_logging.azure.retry)
        transport=RequestsTransport(session=session, session_owner=True, connection_verify=verify),
    )


class Transport:
    """Requests to one DCR stream: the client (built once, on first use) and :meth:`post`."""

    def __init__(
        self,
        endpoint: str,
        rule_id: str,
        stream: str,
        *,
        credential: Any,
        connection_timeout: float,
        read_timeout: float,
        max_in_flight: int,
        client: Any = None,
    ) -> None:
        self.endpoint = endpoint
        self.rule_id = rule_id
        self.stream = stream
        self.connection_timeout = connection_timeout
        self.read_timeout = read_timeout
        self._credential_arg = credential
        self.credential_description = (
            creds.describe(credential) if isinstance(credential, str) else type(credential).__name__
        )
        self._max_in_flight = max_in_flight
        self._client = client
        self._client_lock = threading.Lock()

    def client(self) -> Any:
        """The SDK client, built on first use (imports azure.* lazily)."""
        with self._client_lock:
            if self._client is None:
                self._client = build_client(
                    self.endpoint, self._credential_arg, self._max_in_flight
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def post(self, body: bytes) -> Outcome:
        """Send one gzipped JSON array; how it ended."""
        try:
            from azure.core.exceptions import (
                ClientAuthenticationError,
                HttpResponseError,
                ServiceRequestError,
                ServiceResponseError,
            )
        except ImportError as exc:  # pragma: no cover
            raise DeliveryError(f"the Azure SDK is not installed ({exc})", fatal=True) from exc
        client = self.client()
        try:
            client.upload(
                self.rule_id,
                self.stream,
                io.BytesIO(body),
                connection_timeout=self.connection_timeout,
                read_timeout=self.read_timeout,
            )
            return Outcome(ok=True)
        except ClientAuthenticationError as exc:
            if _is_service_response(exc):
                return self._http_outcome(exc)
            token_status = int(getattr(exc, "status_code", None) or 0)
            if token_status == 429 or token_status >= 500:  # the token service is busy: retry
                return Outcome(detail=f"token request answered {token_status}: {str(exc)[:200]}")
            return Outcome(
                fatal_message=messages.credential_message(exc, self.credential_description)
            )
        except HttpResponseError as exc:
            if exc.response is None:
                return Outcome(unknown=True, detail=str(exc).splitlines()[0][:300])
            return self._http_outcome(exc)
        except ServiceResponseError as exc:  # sent; the answer was lost (cut, read timeout)
            return Outcome(unknown=True, detail=f"{type(exc).__name__}: {str(exc)[:300]}")
        except ServiceRequestError as exc:  # not sent (connect failed)
            return Outcome(detail=f"{type(exc).__name__}: {str(exc)[:300]}")
        except DeliveryError:
            raise
        except (OSError, ValueError) as exc:
            return Outcome(unknown=True, detail=f"{type(exc).__name__}: {str(exc)[:300]}")

    def _http_outcome(self, exc: Any) -> Outcome:
        status = int(exc.status_code or 0)
        response = exc.response
        code, message = _error_of(response)
        outcome = Outcome(
            status=status, code=code, message=message, retry_after=_retry_after(response)
        )
        if status in FATAL_STATUS:
            outcome.fatal_message = messages.fatal_message(
                status,
                code,
                message,
                credential=self.credential_description,
                rule_id=self.rule_id,
                endpoint=self.endpoint,
                stream=self.stream,
            )
        return outcome


def _is_service_response(exc: Any) -> bool:
    """Did the ingestion endpoint answer (not the token service)?"""
    response = getattr(exc, "response", None)
    if response is None:
        return False
    url = str(getattr(getattr(response, "request", None), "url", "") or "")
    return "/dataCollectionRules/" in url


def _error_of(response: Any) -> tuple[str, str]:
    code = ""
    message = ""
    with contextlib.suppress(Exception):
        code = str(response.headers.get("x-ms-error-code") or "")
    with contextlib.suppress(Exception):
        doc = _json.loads(response.text())
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            code = str(doc["error"].get("code") or code)
            message = str(doc["error"].get("message") or "")
    if not message:
        with contextlib.suppress(Exception):
            message = str(response.text())[:500]
    return code, message


def _retry_after(response: Any) -> float | None:
    """Seconds from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` (seconds or a date)."""
    headers = getattr(response, "headers", None) or {}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            with contextlib.suppress(ValueError):
                return max(0.0, float(value) / 1000.0)
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None
