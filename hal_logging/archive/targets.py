"""Where archives go: a local folder, or an Azure Blob Storage container.

Both keep an archive as a sequence of gzip members, each covering a range of
the raw content, and can say after a crash how far they got:

* a folder appends members to ``NAME`` and, after each (fsynced), one line to
  ``NAME.blocks``; a rerun truncates ``NAME`` to the last recorded member;
* a blob stages each member as a block whose id encodes its raw range
  (``<start>-<end>`` in hex, fixed width: Azure wants ids of one length) and
  commits the block list so far, so the blob is readable at every step; a
  rerun reads the committed block list (``get_block_list``) and goes on after
  the last block. Uncommitted blocks of a crashed run are simply not listed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import urllib.parse
from typing import Any

from hal_logging import _json
from hal_logging.archive import ArchiveError, manifest_name

BLOCK_ID = "{start:016x}-{end:016x}"


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalTarget:
    """A folder (created if missing)."""

    permanent = False

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, *name.split("/"))

    def describe(self, name: str) -> str:
        return self.path(name)

    def resume(self, name: str) -> tuple[int, int, int]:
        path = self.path(name)
        raw = comp = blocks = 0
        try:
            with open(path + ".blocks", "rb") as fh:
                for line in fh:
                    try:
                        rec = _json.loads(line)
                        raw, comp, blocks = int(rec["raw_end"]), int(rec["gz_end"]), blocks + 1
                    except (ValueError, KeyError, TypeError):
                        break  # a torn last line: the member before it is the last one
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ArchiveError(f"cannot read {path}.blocks: {exc.strerror}") from exc
        try:
            if os.path.exists(path) and os.path.getsize(path) != comp:
                os.truncate(path, comp)  # drop a member written after its last record
        except OSError as exc:
            raise ArchiveError(f"cannot resume {path}: {exc.strerror}") from exc
        return raw, comp, blocks

    def append(self, name: str, start: int, end: int, gz: bytes, index: int) -> None:
        path = self.path(name)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(gz)
                fh.flush()
                os.fsync(fh.fileno())
                size = fh.tell()
            with open(path + ".blocks", "ab") as fh:
                fh.write(_json.dumps({"raw_start": start, "raw_end": end, "gz_end": size}) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            if index == 0:
                _fsync_dir(os.path.dirname(path))
        except OSError as exc:
            raise ArchiveError(
                f"cannot write the archive {path}: {exc.strerror}; free space or choose "
                "another --archive folder"
            ) from exc

    def put_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        path = self.path(manifest_name(name))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=os.path.dirname(path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(_json.dumps(manifest) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(os.path.dirname(path))
        except OSError as exc:
            raise ArchiveError(f"cannot write the manifest {path}: {exc.strerror}") from exc


def split_container_url(url: str) -> tuple[str, str, str]:
    """``(account_url, container, prefix)`` of a container URL.

    ``https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]``, or the
    emulator's path style ``https://127.0.0.1:PORT/ACCOUNT/CONTAINER[/PREFIX]``.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ArchiveError(
            f"--archive {url}: a Blob Storage destination is an https URL of a container, "
            "https://ACCOUNT.blob.core.windows.net/CONTAINER"
        )
    segs = [s for s in parts.path.split("/") if s]
    host = parts.hostname or ""
    path_style = not host.endswith(".core.windows.net") and not host.endswith(".azure.net")
    need = 2 if path_style else 1
    if len(segs) < need:
        raise ArchiveError(
            f"--archive {url}: name the container, https://ACCOUNT.blob.core.windows.net/CONTAINER"
        )
    base = f"{parts.scheme}://{parts.netloc}" + ("/" + segs[0] if path_style else "")
    rest = segs[1:] if path_style else segs
    return base, rest[0], "/".join(rest[1:])


def _block_id(start: int, end: int) -> str:
    return base64.b64encode(BLOCK_ID.format(start=start, end=end).encode()).decode()


def _block_range(block_id: str) -> tuple[int, int] | None:
    try:
        a, _, b = base64.b64decode(block_id).decode().partition("-")
        return int(a, 16), int(b, 16)
    except (ValueError, UnicodeDecodeError):
        return None


class BlobTarget:
    """An Azure Blob Storage container (or Azurite), written in staged, committed blocks."""

    def __init__(self, url: str, credential_kind: str = "auto") -> None:
        self.url = url.rstrip("/")
        self.account_url, self.container_name, self.prefix = split_container_url(self.url)
        try:
            from azure.storage.blob import ContainerClient
        except ImportError as exc:
            raise ArchiveError(
                f"--archive to Blob Storage needs azure-storage-blob ({exc}); install it with: "
                "pip install 'hal-logging[archive]'"
            ) from exc
        from hal_logging.azure.credentials import CredentialConfigError, make_credential

        try:
            credential = make_credential(credential_kind)
        except CredentialConfigError as exc:
            raise ArchiveError(str(exc)) from exc
        self.client = ContainerClient(
            self.account_url,
            self.container_name,
            credential=credential,
            # Few, short retries: the archiver itself tries again every few seconds and
            # at the end until --drain-timeout (the storage SDK's default waits 15 s, 45 s...).
            retry_total=1,
            initial_backoff=0.5,
            increment_base=2,
            connection_timeout=10,
            read_timeout=60,
        )
        self.committed: list[str] = []
        #: A 403 or a missing container: retrying will not help, the message says what will.
        self.permanent = False

    def _blob(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self, name: str) -> str:
        return f"{self.account_url}/{self.container_name}/{self._blob(name)}"

    def _error(self, exc: Exception, doing: str) -> ArchiveError:
        from azure.core.exceptions import HttpResponseError

        where = f"{self.account_url}/{self.container_name}"
        if isinstance(exc, HttpResponseError):
            raw_code = getattr(exc, "error_code", None) or ""
            code = str(getattr(raw_code, "value", raw_code))
            status = exc.status_code
            if code == "AuthenticationFailed":
                self.permanent = True
                return ArchiveError(
                    f"{doing} {where}: {status} AuthenticationFailed: the storage service "
                    "refused the identity's token; check the identity (managed identity, "
                    "AZURE_CLIENT_ID, or the service principal's AZURE_TENANT_ID/AZURE_CLIENT_ID/"
                    "AZURE_CLIENT_SECRET), its tenant, and the VM's clock"
                )
            if status == 403 or code in ("AuthorizationPermissionMismatch", "AuthorizationFailure"):
                self.permanent = True
                return ArchiveError(
                    f"{doing} {where}: 403 {code or 'Forbidden'}: the identity needs the "
                    "'Storage Blob Data Contributor' role on the storage account or container "
                    "(a new role assignment can take minutes to apply)"
                )
            if status == 401:
                self.permanent = True
                return ArchiveError(
                    f"{doing} {where}: 401 {code or 'Unauthorized'}: the token was refused; "
                    "check the identity (managed identity, AZURE_CLIENT_ID, or the service "
                    "principal's AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET)"
                )
            if code == "ContainerNotFound":
                self.permanent = True
                return ArchiveError(
                    f"{doing} {where}: the container {self.container_name!r} does not exist: "
                    f"create it (az storage container create --auth-mode login -n "
                    f"{self.container_name} --account-name ACCOUNT) or fix the URL"
                )
            if code in ("BlockCountExceedsLimit", "BlockListTooLong"):
                self.permanent = True
                return ArchiveError(
                    f"{doing} {where}: Azure's limit of {50_000} blocks per blob was reached: "
                    "archive the rest to a new DEST"
                )
            if code in ("RequestBodyTooLarge", "InvalidBlobOrBlock"):
                self.permanent = True
                return ArchiveError(
                    f"{doing} {where}: {code}: a block over Azure's block size limit (4000 MiB); "
                    "this is a bug, please report it"
                )
            return ArchiveError(f"{doing} {where}: {status} {code or exc.reason}; will retry")
        return ArchiveError(f"{doing} {where}: cannot reach it ({type(exc).__name__}); will retry")

    def resume(self, name: str) -> tuple[int, int, int]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        blob = self.client.get_blob_client(self._blob(name))
        try:
            committed, _uncommitted = blob.get_block_list("committed")
        except ResourceNotFoundError as exc:
            if str(getattr(exc, "error_code", "") or "").endswith(
                ("ContainerNotFound", "CONTAINER_NOT_FOUND")
            ):
                raise self._error(exc, "cannot archive to") from exc
            # No blob yet; make sure the container exists, for a message that says so.
            try:
                self.client.get_container_properties()
            except AzureError as exc2:
                raise self._error(exc2, "cannot archive to") from exc2
            self.committed = []
            return 0, 0, 0
        except AzureError as exc:
            raise self._error(exc, "cannot archive to") from exc
        raw = comp = 0
        ids: list[str] = []
        for b in committed:
            rng = _block_range(b.id)
            if rng is None or rng[0] != raw:
                break  # not ours, or not contiguous: keep what is
            ids.append(b.id)
            raw = rng[1]
            comp += int(b.size)
        self.committed = ids
        return raw, comp, len(ids)

    def append(self, name: str, start: int, end: int, gz: bytes, index: int) -> None:
        from azure.core.exceptions import AzureError

        blob = self.client.get_blob_client(self._blob(name))
        block = _block_id(start, end)
        try:
            blob.stage_block(block, gz, length=len(gz))
            from azure.storage.blob import BlobBlock

            blob.commit_block_list([BlobBlock(b) for b in (*self.committed, block)])
        except AzureError as exc:
            raise self._error(exc, "cannot upload to") from exc
        self.committed.append(block)

    def put_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        from azure.core.exceptions import AzureError

        blob = self.client.get_blob_client(self._blob(manifest_name(name)))
        try:
            blob.upload_blob(_json.dumps(manifest) + b"\n", overwrite=True)
        except AzureError as exc:
            raise self._error(exc, "cannot upload the manifest to") from exc

    def download(self, blob_name: str, fh: Any) -> None:
        from azure.core.exceptions import AzureError

        try:
            self.client.get_blob_client(blob_name).download_blob().readinto(fh)
        except AzureError as exc:
            raise self._error(exc, f"cannot download {blob_name} from") from exc


def make_target(dest: str, credential_kind: str = "auto") -> LocalTarget | BlobTarget:
    from hal_logging.archive import is_blob_url

    if is_blob_url(dest):
        return BlobTarget(dest, credential_kind)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise ArchiveError(f"--archive {dest}: not a folder; give a folder or a container URL")
    return LocalTarget(dest)
