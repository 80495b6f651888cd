"""A throwaway certificate authority for the stand-in (docs/testing.md, step 1).

The real client libraries verify TLS; rather than turning that off, the stand-in
serves a certificate from its own CA and the client is told to trust that CA
(``REQUESTS_CA_BUNDLE``). With ``ca_dir`` the CA is kept on disk and reused, so
a client started against one emulator process still trusts the next one (tests
that restart the service mid-run rely on this).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
IDENTITIES = ("127.0.0.1", "::1", "localhost")


def load_or_create_ca(ca_dir: str | os.PathLike[str] | None) -> tuple[object, Path | None]:
    """A ``trustme.CA``: read from ``ca_dir`` when it holds one, else new (and saved there)."""
    import trustme

    if ca_dir is None:
        return trustme.CA(organization_name="hal-logging emulator"), None
    folder = Path(ca_dir)
    cert, key = folder / CA_CERT_FILE, folder / CA_KEY_FILE
    if cert.is_file() and key.is_file():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes()), cert
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="hal-logging emulator")
    ca.cert_pem.write_to_path(str(cert))
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(ca.private_key_pem.bytes())
    return ca, cert


def write_ca_cert(ca: object, path: str | os.PathLike[str]) -> Path:
    """Write the CA certificate (public part only) where clients can read it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(target))  # type: ignore[attr-defined]
    return target


def server_context(ca: object) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for loopback names."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = ca.issue_cert(*IDENTITIES)  # type: ignore[attr-defined]
    leaf.configure_cert(ctx)
    return ctx
