"""A local stand-in for the Logs Ingestion API and the VM's metadata service.

Two loopback servers (docs/testing.md):

- **ingestion**, HTTPS with a certificate from the stand-in's own CA:
  ``POST /dataCollectionRules/{rule}/streams/{stream}?api-version=2023-01-01``,
  checked as strictly as docs/facts.md §1 describes the service (bearer token, path,
  api-version, content type, 1,048,576-byte limit on the body as sent and as
  unzipped, a JSON array of objects, 204 as the only success). It also answers
  the service-principal token flow (``/{tenant}/v2.0/.well-known/openid-configuration``
  and ``/{tenant}/oauth2/v2.0/token``) for clients pointed here with
  ``AZURE_AUTHORITY_HOST``.
- **IMDS**, plain HTTP as on a VM: ``/metadata/identity/oauth2/token`` (the
  managed-identity token, ``Metadata: true`` required) and ``/metadata/instance``.

Both also serve ``GET /_emulator/stats`` and ``POST /_emulator/faults`` (see
:class:`~hal_logging.emulator.faults.FaultPlan`) so a test can script outages.

Only the server is imitated: clients are the real SDK and credential classes.
Accepted rows go to a :class:`~hal_logging.emulator.store.Workspace`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import repeat
from pathlib import Path
from typing import Any, Final

import orjson

from hal_logging import _json, schema
from hal_logging.emulator.faults import ERROR_STATUS, FaultPlan
from hal_logging.emulator.store import Workspace
from hal_logging.emulator.tls import load_or_create_ca, server_context, write_ca_cert
from hal_logging.emulator.tokens import AUDIENCE, TokenIssuer, audience_ok

#: The service's per-request limit, on the body as sent and unzipped (docs/facts.md §1).
MAX_REQUEST_BYTES: Final = 1_048_576
API_VERSION: Final = "2023-01-01"
#: A DCR immutable id looks like this; the default rule of the stand-in.
DEFAULT_RULE_ID: Final = "dcr-00000000000000000000000000000000"
#: Bodies beyond this are not even read (the connection is closed after the 413).
REJECT_MARKER: Final = "HAL-EMULATOR-REJECT"
_DISCARD_LIMIT: Final = 64 * 1024 * 1024
_INGEST_PATH = re.compile(r"^/dataCollectionRules/([^/]+)/streams/([^/]+)$")
_SP_DISCOVERY = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")
_SP_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_TIME_PAST: Final = timedelta(days=2)
_TIME_FUTURE: Final = timedelta(days=1)

DEFAULT_INSTANCE: Final[dict[str, Any]] = {
    "compute": {
        "name": "hal-emulated-vm",
        "vmId": "00000000-0000-4000-8000-0000000e0001",
        "resourceId": (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/hal-emulator"
            "/providers/Microsoft.Compute/virtualMachines/hal-emulated-vm"
        ),
        "location": "local",
        "vmSize": "Emulated",
        "subscriptionId": "00000000-0000-0000-0000-000000000000",
        "resourceGroupName": "hal-emulator",
    },
    "network": {"interface": []},
}


@dataclass
class EmulatorConfig:
    """Everything the stand-in can be told; every field has a CLI flag."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks
    imds_port: int | None = 0  # None: no IMDS server
    db: str | None = None  # workspace file; None: in memory
    ca_dir: str | None = None  # keep/reuse the CA here (survives restarts)
    ca_out: str | None = None  # also write the CA certificate here
    rule_ids: tuple[str, ...] = (DEFAULT_RULE_ID,)  # empty: any "dcr-..." id
    streams: tuple[str, ...] = (schema.STREAM_NAME,)
    forbidden: bool = False  # 403 on every ingestion: the identity lacks the role
    strict_auth: bool = True  # False: any bearer token is accepted
    tolerate_oversize: bool = False  # accept bodies over the limit (baseline benchmarks)
    store: bool = True  # False: check and count rows but keep none (benchmarks)
    faults: FaultPlan = field(default_factory=FaultPlan)
    client_ids: tuple[str, ...] = ()  # user-assigned identities IMDS knows (empty: any)
    client_secrets: dict[str, str] = field(
        default_factory=dict
    )  # SP client id -> secret (empty: any)
    token_lifetime: int = 3600
    #: Issuer claim of Blob Storage tokens (None: Entra's form); another one makes
    #: Azurite refuse them (issue 16's 403 test).
    storage_issuer: str | None = None
    #: A row whose Message contains this is refused with 400, as the service refuses a
    #: row it cannot take — the way tests exercise bisecting and the dead-letter file.
    reject_marker: str | None = REJECT_MARKER
    instance: dict[str, Any] = field(
        default_factory=lambda: _json.loads(_json.dumps(DEFAULT_INSTANCE))
    )
    on_request: Callable[[dict[str, Any]], None] | None = None  # one call per ingestion request


class _Stats:
    """Counters the tests and the benchmark read (``GET /_emulator/stats``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.status: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.rows_accepted = 0  # rows in requests answered 204
        self.rows_stored = 0  # rows written to the workspace (includes stored-then-failed)
        self.max_compressed = 0
        self.max_uncompressed = 0
        self.over_limit = 0  # requests over either limit (413, or tolerated)
        self.bytes_compressed = 0
        self.bytes_uncompressed = 0
        self.fields_over_64kb = 0
        self.undeclared_columns: Counter[str] = Counter()
        self.time_replaced = 0
        self.gzip_requests = 0
        self.token_requests = 0
        self.instance_requests = 0
        self.auth_failures: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "status": dict(self.status),
                "faults": dict(self.faults),
                "rows_accepted": self.rows_accepted,
                "rows_stored": self.rows_stored,
                "max_compressed_bytes": self.max_compressed,
                "max_uncompressed_bytes": self.max_uncompressed,
                "over_limit_requests": self.over_limit,
                "bytes_compressed": self.bytes_compressed,
                "bytes_uncompressed": self.bytes_uncompressed,
                "gzip_requests": self.gzip_requests,
                "fields_over_64kb": self.fields_over_64kb,
                "undeclared_columns": dict(self.undeclared_columns),
                "time_replaced": self.time_replaced,
                "token_requests": self.token_requests,
                "instance_requests": self.instance_requests,
                "auth_failures": dict(self.auth_failures),
            }


class _Server(ThreadingHTTPServer):
    """A threading HTTP(S) server that can cut every open connection on stop.

    TLS is wrapped per connection in the handler thread, so one client stuck in
    its handshake cannot block the accept loop.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], emulator: Emulator, tls: ssl.SSLContext | None
    ) -> None:
        self.emulator = emulator
        self.tls = tls
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        try:
            if self.tls is not None:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                request.close()
            return
        with self.connections_lock:
            self.open_connections.add(conn)
        try:
            _Handler(conn, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.connections_lock:
                self.open_connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: clients hang up
        pass

    def cut_all(self) -> None:
        with self.connections_lock:
            conns = list(self.open_connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Cut(Exception):
    """Close the connection without answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hal-logging-emulator"
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing -----------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 204:
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, _json.dumps(doc), {"Content-Type": "application/json", **(headers or {})}
        )

    def _error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._json(
            status,
            {"error": {"code": code, "message": message}},
            {"x-ms-error-code": code, **(headers or {})},
        )

    def _read_body(self, limit: int) -> tuple[bytes | None, int]:
        """The body (``None`` when longer than ``limit``, after discarding it) and its length."""
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunked(limit)
            return b"", 0
        try:
            length = int(length_text)
        except ValueError:
            raise _Cut() from None
        if length > limit:
            if length > _DISCARD_LIMIT:
                self.close_connection = True
                return None, length
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    raise _Cut()
                remaining -= len(chunk)
            return None, length
        body = self.rfile.read(length)
        if len(body) != length:
            raise _Cut()
        return body, length

    def _read_chunked(self, limit: int) -> tuple[bytes | None, int]:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Cut() from None
            if size == 0:
                self.rfile.readline(1024)
                break
            chunk = self.rfile.read(size)
            self.rfile.readline(16)
            total += len(chunk)
            if total <= limit:
                parts.append(chunk)
            elif total > _DISCARD_LIMIT:
                raise _Cut()
        return (b"".join(parts) if total <= limit else None), total

    def _route(self) -> tuple[str, dict[str, list[str]]]:
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, urllib.parse.parse_qs(parsed.query)

    # --- verbs ----------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        path, query = self._route()
        try:
            if path.startswith("/_emulator/"):
                emu._admin(self, method, path)
            elif self.server.tls is None:
                emu._imds(self, method, path, query)
            elif _INGEST_PATH.match(path):
                emu._ingest(self, method, path, query)
            elif _SP_DISCOVERY.match(path) or _SP_TOKEN.match(path):
                emu._service_principal(self, method, path)
            else:
                self._read_body(_DISCARD_LIMIT)
                self._error(404, "NotFound", f"No such path: {path}")
        except _Cut:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class Emulator:
    """The stand-in, usable in-process (``with Emulator() as emu:``) or via the CLI.

    ``start()`` binds loopback ports (chosen by the OS unless configured) and
    returns at once; ``stop()`` closes the servers and cuts open connections.
    ``restart()`` does both on the same ports, CA, workspace and token secret.
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        self.config = config or EmulatorConfig()
        for key, value in overrides.items():
            if not hasattr(self.config, key):
                raise TypeError(f"unknown emulator option {key!r}")
            setattr(self.config, key, value)
        self.faults = self.config.faults
        self.stats_counters = _Stats()
        self.workspace = Workspace(self.config.db)
        self.tokens = TokenIssuer(self.workspace.secret(), self.config.token_lifetime)
        if self.config.storage_issuer:
            self.tokens.storage_issuer = self.config.storage_issuer
        self._tmp = (
            tempfile.TemporaryDirectory(prefix="hal-emulator-") if not self.config.ca_dir else None
        )
        self._ca, ca_path = load_or_create_ca(self.config.ca_dir)
        if ca_path is None:
            assert self._tmp is not None
            ca_path = write_ca_cert(self._ca, Path(self._tmp.name) / "ca.pem")
        self.ca_path: Path = ca_path
        if self.config.ca_out:
            write_ca_cert(self._ca, self.config.ca_out)
            self.ca_path = Path(self.config.ca_out)
        self._tls = server_context(self._ca)
        self._stopping = threading.Event()
        self._ingest_server: _Server | None = None
        self._imds_server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self.port = self.config.port
        self.imds_port = self.config.imds_port

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> Emulator:
        self._stopping.clear()
        self._ingest_server = _Server((self.config.host, self.port or 0), self, self._tls)
        self.port = self._ingest_server.server_address[1]
        servers = [self._ingest_server]
        if self.imds_port is not None:
            self._imds_server = _Server((self.config.host, self.imds_port or 0), self, None)
            self.imds_port = self._imds_server.server_address[1]
            servers.append(self._imds_server)
        for server in servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="hal-emulator",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving; keeps the workspace open for reading (``close()`` ends it)."""
        self._stopping.set()
        for server in (self._ingest_server, self._imds_server):
            if server is not None:
                server.shutdown()
                server.cut_all()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._ingest_server = self._imds_server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.workspace.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what clients need ------------------------------------------------------
    @property
    def host_for_url(self) -> str:
        return f"[{self.config.host}]" if ":" in self.config.host else self.config.host

    @property
    def endpoint(self) -> str:
        """The data collection endpoint URL (HTTPS)."""
        return f"https://{self.host_for_url}:{self.port}"

    @property
    def imds_url(self) -> str:
        return f"http://{self.host_for_url}:{self.imds_port}"

    @property
    def rule_id(self) -> str:
        return self.config.rule_ids[0] if self.config.rule_ids else DEFAULT_RULE_ID

    @property
    def stream(self) -> str:
        return self.config.streams[0]

    def env(self) -> dict[str, str]:
        """Environment that points the real SDK and credentials at this stand-in."""
        env = {
            "REQUESTS_CA_BUNDLE": str(Path(self.ca_path).absolute()),
            "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT": self.endpoint,
            "AZURE_MONITOR_DATA_COLLECTION_RULE_ID": self.rule_id,
            "AZURE_MONITOR_STREAM_NAME": self.stream,
        }
        if self.imds_port is not None:
            env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = self.imds_url
            env["HAL_LOGGING_IMDS_URL"] = self.imds_url
        return env

    # --- state ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        snap = self.stats_counters.snapshot()
        snap["faults_plan"] = self.faults.describe()
        return snap

    def reset_stats(self) -> None:
        with self.stats_counters.lock:
            self.stats_counters.reset()

    def set_faults(self, **changes: Any) -> None:
        """Change faults at runtime: ``rates=``, ``script=``, ``down=``, ``seed=``, ..."""
        self.faults.update(changes)

    def issue_token(self, kind: str = "managed-identity", lifetime: int | None = None) -> str:
        return self.tokens.issue(kind=kind, subject="test", lifetime=lifetime)[0]

    # --- admin ------------------------------------------------------------------------
    def _admin(self, h: _Handler, method: str, path: str) -> None:
        body, _ = h._read_body(1 << 20)
        if path == "/_emulator/stats" and method == "GET":
            h._json(200, self.stats())
        elif path == "/_emulator/faults" and method in ("POST", "PUT"):
            try:
                changes = _json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                if "forbidden" in changes:
                    self.config.forbidden = bool(changes.pop("forbidden"))
                self.faults.update(changes)
            except (ValueError, TypeError, _json.JSONDecodeError) as exc:
                h._error(400, "InvalidFaults", str(exc))
                return
            h._json(200, self.faults.describe())
        elif path == "/_emulator/reset" and method == "POST":
            self.reset_stats()
            h._json(200, {"reset": True})
        else:
            h._error(404, "NotFound", f"No such admin path: {method} {path}")

    # --- IMDS -------------------------------------------------------------------------
    def _imds(self, h: _Handler, method: str, path: str, query: dict[str, list[str]]) -> None:
        h._read_body(1 << 20)
        if h.headers.get("Metadata", "").lower() != "true":
            h._json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Required metadata header not specified",
                },
            )
            return
        if "api-version" not in query:
            h._json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Required query variable 'api-version' is missing",
                },
            )
            return
        if method != "GET":
            h._json(405, {"error": "invalid_request", "error_description": "Only GET is supported"})
            return
        if path == "/metadata/identity/oauth2/token":
            with self.stats_counters.lock:
                self.stats_counters.token_requests += 1
            resource = (query.get("resource") or [""])[0]
            if not resource:
                h._json(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "Required query variable 'resource' is missing",
                    },
                )
                return
            client_id = (query.get("client_id") or [""])[0]
            if client_id and self.config.client_ids and client_id not in self.config.client_ids:
                h._json(
                    400, {"error": "invalid_request", "error_description": "Identity not found"}
                )
                return
            token, expires = self.tokens.issue(
                kind="managed-identity", subject=client_id or "system-assigned", audience=resource
            )
            h._json(
                200,
                {
                    "access_token": token,
                    "client_id": client_id or "00000000-0000-4000-8000-00000000c11d",
                    "expires_in": str(expires - int(time.time())),
                    "expires_on": str(expires),
                    "ext_expires_in": str(expires - int(time.time())),
                    "not_before": str(int(time.time())),
                    "resource": resource,
                    "token_type": "Bearer",
                },
            )
        elif path.startswith("/metadata/instance"):
            with self.stats_counters.lock:
                self.stats_counters.instance_requests += 1
            doc: Any = self.config.instance
            for part in path[len("/metadata/instance") :].strip("/").split("/"):
                if not part:
                    continue
                if not isinstance(doc, dict) or part not in doc:
                    h._json(404, {"error": "Not found"})
                    return
                doc = doc[part]
            h._json(200, doc)
        else:
            h._json(404, {"error": "Not found"})

    # --- service principal (client credentials flow) -----------------------------------
    def _service_principal(self, h: _Handler, method: str, path: str) -> None:
        body, _ = h._read_body(1 << 20)
        discovery = _SP_DISCOVERY.match(path)
        if discovery and method == "GET":
            tenant = discovery.group(1)
            base = f"{self.endpoint}/{tenant}"
            h._json(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"{base}/v2.0",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                    ],
                    "response_types_supported": ["code", "id_token", "token"],
                    "tenant_region_scope": "local",
                },
            )
            return
        if not _SP_TOKEN.match(path) or method != "POST":
            h._error(404, "NotFound", f"No such path: {path}")
            return
        with self.stats_counters.lock:
            self.stats_counters.token_requests += 1
        form = {
            k: v[0]
            for k, v in urllib.parse.parse_qs((body or b"").decode("utf-8", "replace")).items()
        }
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        expected = self.config.client_secrets.get(client_id) if self.config.client_secrets else None
        if (
            form.get("grant_type") != "client_credentials"
            or not client_id
            or not secret
            or (self.config.client_secrets and expected != secret)
        ):
            h._json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
            return
        scope = form.get("scope", "")
        audience = next(
            (s for s in scope.split() if audience_ok(s)), scope.split()[0] if scope else ""
        )
        token, expires = self.tokens.issue(
            kind="service-principal", subject=client_id, audience=audience
        )
        lifetime = expires - int(time.time())
        h._json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    # --- ingestion ------------------------------------------------------------------------
    def _ingest(self, h: _Handler, method: str, path: str, query: dict[str, list[str]]) -> None:
        started = time.time()
        limit = _DISCARD_LIMIT if self.config.tolerate_oversize else MAX_REQUEST_BYTES
        body, sent_length = h._read_body(limit)
        match = _INGEST_PATH.match(path)
        assert match is not None
        rule_id, stream = (urllib.parse.unquote(g) for g in match.groups())
        info: dict[str, Any] = {
            "key": uuid.uuid4().hex,
            "time": started,
            "rule_id": rule_id,
            "stream": stream,
            "compressed_bytes": sent_length,
            "uncompressed_bytes": 0,
            "rows": 0,
            "fault": None,
            "stored": False,
        }

        def answer(
            status: int, code: str = "", message: str = "", headers: dict[str, str] | None = None
        ) -> None:
            info["status"] = status
            self._record(info)
            if status == 204:
                h._send(204, b"", headers)
            else:
                h._error(status, code, message, headers)

        if method != "POST":
            answer(405, "MethodNotAllowed", "Use POST.")
            return
        check = (
            self.tokens.check(h.headers.get("Authorization")) if self.config.strict_auth else None
        )
        if check is not None and not check.ok:
            with self.stats_counters.lock:
                self.stats_counters.auth_failures[check.code] += 1
            answer(
                401,
                check.code,
                check.message,
                {"WWW-Authenticate": f'Bearer authorization_uri="", resource="{AUDIENCE}"'},
            )
            return
        versions = query.get("api-version") or []
        if versions != [API_VERSION]:
            answer(
                400,
                "InvalidApiVersion",
                f"The api-version {versions[0] if versions else '(missing)'!r} is not supported; use {API_VERSION}.",
            )
            return
        if (self.config.rule_ids and rule_id not in self.config.rule_ids) or not rule_id.startswith(
            "dcr-"
        ):
            answer(
                404,
                "NotFound",
                f"Data collection rule {rule_id!r} not found (use the DCR immutable id, dcr-...).",
            )
            return
        if stream not in self.config.streams:
            answer(
                404,
                "InvalidStream",
                f"Stream {stream!r} is not declared in the data collection rule.",
            )
            return
        if self.config.forbidden:
            answer(
                403,
                "OperationFailed",
                "The authentication token provided does not have access to ingest data for the data collection rule.",
            )
            return
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            answer(
                415,
                "UnsupportedMediaType",
                f"Content-Type must be application/json, got {content_type!r}.",
            )
            return
        over = body is None
        raw = body or b""
        encoding = (h.headers.get("Content-Encoding") or "").strip().lower()
        if not over and encoding == "gzip":
            decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                raw = decomp.decompress(raw, limit + 1)
                if not decomp.eof and len(raw) <= limit:
                    raise zlib.error("truncated gzip stream")
            except zlib.error as exc:
                answer(400, "InvalidContentEncoding", f"The body is not valid gzip: {exc}")
                return
            with self.stats_counters.lock:
                self.stats_counters.gzip_requests += 1
        elif not over and encoding not in ("", "identity"):
            answer(
                415,
                "UnsupportedContentEncoding",
                f"Content-Encoding {encoding!r} is not supported; use gzip.",
            )
            return
        info["uncompressed_bytes"] = len(raw) if not over else 0
        if over or len(raw) > MAX_REQUEST_BYTES or sent_length > MAX_REQUEST_BYTES:
            with self.stats_counters.lock:
                self.stats_counters.over_limit += 1
            if over or not self.config.tolerate_oversize:
                answer(
                    413,
                    "ContentLengthLimitExceeded",
                    f"The request body is {max(sent_length, len(raw))} bytes; the limit is {MAX_REQUEST_BYTES} "
                    "bytes, compressed and uncompressed.",
                )
                return
        fault = self.faults.choose()
        info["fault"] = fault
        if fault is not None:
            with self.stats_counters.lock:
                self.stats_counters.faults[fault] += 1
        if fault == "cut":
            self._record({**info, "status": 0})
            raise _Cut()
        if fault in ERROR_STATUS:
            status = ERROR_STATUS[fault]
            headers: dict[str, str] = {}
            if fault in ("429", "503"):
                headers["Retry-After"] = _retry_after_text(self.faults.retry_after)
            code = {
                429: "TooManyRequests",
                401: "InvalidToken",
                403: "OperationFailed",
                404: "NotFound",
            }.get(status, "ServiceUnavailable" if status >= 500 else "RequestTimeout")
            answer(status, code, f"Injected fault {fault}.", headers)
            return
        try:
            rows = _json.loads(raw)
        except _json.JSONDecodeError as exc:
            answer(400, "InvalidPayload", f"The body is not valid JSON: {exc}")
            return
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            answer(400, "InvalidPayload", "The body must be a JSON array of objects.")
            return
        info["rows"] = len(rows)
        marker = self.config.reject_marker
        if marker:
            for index, row in enumerate(rows):
                message = row.get("Message")
                if isinstance(message, str) and marker in message:
                    answer(400, "InvalidPayload", f"Row {index} cannot be ingested ({marker}).")
                    return
        if fault == "slow" and self._stopping.wait(self.faults.slow_seconds):
            self._record({**info, "status": 0})  # stopped while holding the answer back
            raise _Cut()
        self._inspect(rows)
        if self.config.store:
            self.workspace.insert(rows, info["key"])
        info["stored"] = True
        with self.stats_counters.lock:
            self.stats_counters.rows_stored += len(rows)
        if fault == "stored-cut":
            self._record({**info, "status": 0})
            raise _Cut()
        if fault == "stored-500":
            answer(500, "InternalServerError", "Injected fault stored-500 (the rows were stored).")
            return
        with self.stats_counters.lock:
            self.stats_counters.rows_accepted += len(rows)
        answer(204)

    def _record(self, info: dict[str, Any]) -> None:
        status = int(info.get("status", 0))
        with self.stats_counters.lock:
            s = self.stats_counters
            s.requests += 1
            s.status[str(status) if status else "cut"] += 1
            s.max_compressed = max(s.max_compressed, int(info["compressed_bytes"]))
            s.max_uncompressed = max(s.max_uncompressed, int(info["uncompressed_bytes"]))
            s.bytes_compressed += int(info["compressed_bytes"])
            s.bytes_uncompressed += int(info["uncompressed_bytes"])
        self.workspace.log_request(
            key=str(info.get("key", "")),
            time=float(info["time"]),
            status=status,
            fault=info.get("fault"),
            compressed=int(info["compressed_bytes"]),
            uncompressed=int(info["uncompressed_bytes"]),
            rows=int(info["rows"]),
            stored=bool(info["stored"]),
        )
        if self.config.on_request is not None:
            with contextlib.suppress(Exception):
                self.config.on_request({**info, "status": status})

    def _inspect(self, rows: list[dict[str, Any]]) -> None:
        """Do what the service does silently, and count it: long fields, unknown columns, old times."""
        now = datetime.now(timezone.utc)
        earliest, latest = now - _TIME_PAST, now + _TIME_FUTURE
        if _nothing_to_note(rows, earliest, latest):
            return
        over, replaced, undeclared = _inspect_each(rows, now)
        with self.stats_counters.lock:
            self.stats_counters.fields_over_64kb += over
            self.stats_counters.time_replaced += replaced
            self.stats_counters.undeclared_columns.update(undeclared)


def _inspect_each(rows: list[dict[str, Any]], now: datetime) -> tuple[int, int, Counter[str]]:
    """Row by row: (fields over 64 KB, times replaced (in ``rows``), undeclared keys)."""
    earliest, latest = now - _TIME_PAST, now + _TIME_FUTURE
    over = replaced = 0
    undeclared: Counter[str] = Counter()
    for row in rows:
        for key, value in row.items():
            if key not in schema.COLUMN_SET:
                undeclared[key] += 1
            if isinstance(value, str):
                if (
                    len(value) > schema.MAX_FIELD_BYTES // 4
                    and len(value.encode("utf-8", "surrogatepass")) > schema.MAX_FIELD_BYTES
                ):
                    over += 1
            elif (
                isinstance(value, (dict, list)) and len(_json.dumps(value)) > schema.MAX_FIELD_BYTES
            ):
                over += 1
        stamp = _parse_time(row.get("TimeGenerated"))
        if stamp is None or not earliest <= stamp <= latest:
            row["TimeGenerated"] = now.isoformat().replace("+00:00", "Z")
            replaced += 1
    return over, replaced, undeclared


#: "YYYY-MM-DDTHH:MM:SS.ffffffZ" (what the package sends), repeated: a valid time of day,
#: months 01-12, days 01-31 (days past a month's end are checked per distinct date).
_CANONICAL_TIMES: Final = re.compile(
    r"(?:\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z)+",
    re.ASCII,
)
_ONLY_27: Final = frozenset({27})


def _nothing_to_note(rows: list[dict[str, Any]], earliest: datetime, latest: datetime) -> bool:
    """True when :meth:`Emulator._inspect`'s row-by-row checks would count nothing and change nothing.

    The same answers with C-level calls over the whole request (~1.5 us a
    row instead of ~7: this stand-in shares the benchmark machine's two cores
    with the client it measures). Any doubt returns False and the row-by-row
    checks decide:

    - no key outside the table's columns (one set union over the rows);
    - no field over 64 KB: a field's UTF-8 text, or its JSON for an object or
      array, is part of its row's JSON (rows parsed from JSON hold only JSON
      types, and escapes only lengthen a string), so no row's JSON over 64 KB
      means no field over it;
    - every TimeGenerated in the package's canonical UTC form and inside the
      window: for such strings, text order is time order.
    """
    try:
        keys: set[str] = set().union(*map(dict.keys, rows))
        if not keys <= schema.COLUMN_SET:
            return False
        if max(map(len, map(orjson.dumps, rows)), default=0) > schema.MAX_FIELD_BYTES:
            return False
        stamps: list[str] = list(map(dict.get, rows, repeat("TimeGenerated")))  # type: ignore[arg-type]
        if not stamps:
            return True
        if set(map(len, stamps)) != _ONLY_27 or _CANONICAL_TIMES.fullmatch("".join(stamps)) is None:
            return False
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
        if min(stamps) < earliest.strftime(fmt) or max(stamps) > latest.strftime(fmt):
            return False
        for day in {stamp[:10] for stamp in stamps}:
            date.fromisoformat(day)  # 2026-02-30 passes the pattern: ValueError
    except (TypeError, ValueError):  # a time that is not a str, a value orjson refuses, ...
        return False
    return True


def _retry_after_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat takes at most 6 fraction digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


@contextlib.contextmanager
def running(config: EmulatorConfig | None = None, **overrides: Any) -> Iterator[Emulator]:
    """``with running(faults=FaultPlan(...)) as emu:`` — start, yield, close."""
    emu = Emulator(config, **overrides)
    emu.start()
    try:
        yield emu
    finally:
        emu.close()


def new_rule_id() -> str:
    return "dcr-" + uuid.uuid4().hex
