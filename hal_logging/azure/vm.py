"""Am I on an Azure VM, and which one?

The system this replaces answered by asking IMDS with a 2 s timeout, so every
laptop and CI run paid two seconds (docs/facts.md §4). Here the answer off Azure comes
from two small files the kernel exposes (docs/facts.md §3), without any network call:

- ``sys_vendor`` is ``Microsoft Corporation`` (also true of Hyper-V guests), and
- ``chassis_asset_tag`` is ``7783-7084-3265-9085`` (Azure's own tag).

Only when both say "Azure" is the Instance Metadata Service asked, once, with a
1 s timeout, no proxy (IMDS is link-local: a proxy would answer for it or hang)
and the ``Metadata: true`` header IMDS requires. The answer is cached per
(DMI folder, IMDS URL), so tests that point them elsewhere get fresh answers.

Both locations can be overridden, which is how tests stay on loopback:
``HAL_LOGGING_DMI_DIR`` (default ``/sys/class/dmi/id``) and
``HAL_LOGGING_IMDS_URL`` (default ``http://169.254.169.254``).

Stdlib only: this is imported by the forwarder and by ``setup_logging`` and
must not pull the Azure SDK in.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from hal_logging import _json

DMI_DIR_ENV: Final = "HAL_LOGGING_DMI_DIR"
IMDS_URL_ENV: Final = "HAL_LOGGING_IMDS_URL"
DEFAULT_DMI_DIR: Final = "/sys/class/dmi/id"
DEFAULT_IMDS_URL: Final = "http://169.254.169.254"

AZURE_SYS_VENDOR: Final = "Microsoft Corporation"
AZURE_ASSET_TAG: Final = "7783-7084-3265-9085"

INSTANCE_PATH: Final = "/metadata/instance?api-version=2021-02-01"
#: IMDS answers in milliseconds on a VM; the issue caps the wait at 1 s.
IMDS_TIMEOUT: Final = 1.0
#: An instance document is a few KB; refuse to buffer anything absurd.
_MAX_RESPONSE_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class VMMetadata:
    """What IMDS says about this VM (``compute.*`` of the instance document).

    Strings are ``""`` when IMDS left them out. ``resource_id`` is the ARM id
    (``/subscriptions/.../virtualMachines/<name>``).
    """

    name: str
    vm_id: str
    resource_id: str
    location: str = ""
    vm_size: str = ""
    subscription_id: str = ""
    resource_group: str = ""
    vm_scale_set_name: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_instance(cls, document: Any) -> VMMetadata | None:
        """Build from the instance JSON; ``None`` when it is not one (no ``compute.vmId``)."""
        if not isinstance(document, dict):
            return None
        compute = document.get("compute")
        if not isinstance(compute, dict):
            return None

        def text(key: str) -> str:
            value = compute.get(key)
            return value.strip() if isinstance(value, str) else ""

        vm_id = text("vmId")
        if not vm_id:
            return None
        return cls(
            name=text("name"),
            vm_id=vm_id,
            resource_id=text("resourceId"),
            location=text("location"),
            vm_size=text("vmSize"),
            subscription_id=text("subscriptionId"),
            resource_group=text("resourceGroupName"),
            vm_scale_set_name=text("vmScaleSetName"),
        )


def dmi_dir() -> Path:
    return Path(os.environ.get(DMI_DIR_ENV) or DEFAULT_DMI_DIR)


def imds_url() -> str:
    return (os.environ.get(IMDS_URL_ENV) or DEFAULT_IMDS_URL).rstrip("/")


def _read_dmi(folder: Path, name: str) -> str:
    try:
        return (folder / name).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:  # missing (not Linux, no DMI), or unreadable
        return ""


def dmi_says_azure(folder: Path | None = None) -> bool:
    """True when the DMI files name Azure. No network; a few microseconds."""
    folder = dmi_dir() if folder is None else folder
    return (
        _read_dmi(folder, "chassis_asset_tag") == AZURE_ASSET_TAG
        and _read_dmi(folder, "sys_vendor") == AZURE_SYS_VENDOR
    )


def fetch_instance_metadata(base_url: str | None = None, timeout: float = IMDS_TIMEOUT) -> Any:
    """GET the IMDS instance document; the parsed JSON, or ``None`` on any failure.

    Goes straight to the address: an empty ProxyHandler ignores ``http_proxy``
    (IMDS is link-local, docs/facts.md §3). Never raises.
    """
    # Imported here, not at the top: every forwarder start imports this module
    # (runner.trusted_context), and off Azure no network code should be loaded.
    import http.client
    import urllib.error
    import urllib.request

    url = (imds_url() if base_url is None else base_url.rstrip("/")) + INSTANCE_PATH
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Metadata": "true"})
    try:
        with opener.open(request, timeout=min(timeout, IMDS_TIMEOUT)) as response:
            if response.status != 200:
                return None
            body = response.read(_MAX_RESPONSE_BYTES + 1)
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError):
        return None
    if len(body) > _MAX_RESPONSE_BYTES:
        return None
    try:
        return _json.loads(body)
    except _json.JSONDecodeError:
        return None


# Cache: (dmi folder, imds url) -> metadata or None (None = not an Azure VM).
_cache: dict[tuple[str, str], VMMetadata | None] = {}
_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    # A fork while another thread was probing would leave the child's copy locked.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _probe(refresh: bool) -> VMMetadata | None:
    folder = dmi_dir()
    if not dmi_says_azure(folder):
        return None  # off Azure: answered from files, nothing sent
    key = (str(folder), imds_url())
    with _lock:  # one probe at a time: concurrent first callers wait, then hit the cache
        if not refresh and key in _cache:
            return _cache[key]
        meta = VMMetadata.from_instance(fetch_instance_metadata(key[1]))
        _cache[key] = meta
        return meta


def vm_metadata(refresh: bool = False) -> VMMetadata | None:
    """This VM's name, id, resource id (and location, size, ...), or ``None`` off Azure.

    Cached after the first answer, including a failed one, so a VM whose IMDS is
    blocked pays the 1 s timeout once, not per call. ``refresh=True`` asks again.
    """
    return _probe(refresh)


def is_running_in_azure_vm(refresh: bool = False) -> bool:
    """True on an Azure VM: DMI says Azure *and* IMDS confirms.

    Off Azure this reads two files and returns, with no network traffic. On a
    DMI-Azure machine whose IMDS does not answer within 1 s (blocked, or a
    nested VM), the answer is False: Azure output would not work there anyway.
    """
    return _probe(refresh) is not None


def trusted_vm_name() -> str | None:
    """The VM's name as Azure knows it, for the forwarder's VMName column.

    ``None`` off Azure (fast and silent) or when IMDS gives no name. Coming from
    IMDS, not from the container, it is a *trusted* context value (docs/contract.md §3).
    """
    meta = _probe(refresh=False)
    return meta.name if meta is not None and meta.name else None


def clear_cache() -> None:
    """Forget cached answers (tests; or after the VM was renamed)."""
    with _lock:
        _cache.clear()
