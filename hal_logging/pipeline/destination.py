"""Where rows go, named: the destination a run ships to, and whether it was chosen on purpose.

Two rules the forwarder keeps with it:

* **A checkpoint belongs to its destination.** :func:`destination_id` names
  the place rows land: the sink kind plus the Azure endpoint, rule id and
  stream, the absolute workspace path, the JSON-lines output path, or the OTLP
  endpoint. Checkpoints are kept per destination id, so a file shipped to the
  local workspace by mistake is shipped whole to Azure once the settings are
  fixed, and a rerun to the same destination resumes.
* **The destination is always deliberate.** On an Azure VM a missing
  ``AZURE_MONITOR_*`` variable (easy under ``nohup`` over ssh) would otherwise
  send a task's logs to a SQLite file on a disk that is about to be deleted.
  :func:`refusal` says when to refuse instead: Azure detected, no ingestion
  settings, and the local workspace not asked for (``--sink sqlite``, ``--db``
  or ``HAL_LOGGING_DB``). Off Azure the answer comes from two DMI files, with
  no network call (see :mod:`hal_logging.azure.vm`).
"""

from __future__ import annotations

import dataclasses
import os

from hal_logging.pipeline.config import ForwardConfig

ENDPOINT_ENV = "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"
RULE_ENV = "AZURE_MONITOR_DATA_COLLECTION_RULE_ID"


def destination_id(config: ForwardConfig, sink_name: str | None = None) -> str:
    """A stable name for where ``config`` sends rows (the checkpoint's key).

    A dry run is named after the destination it estimates for, so it reads
    the checkpoint a real run would resume from.
    """
    if sink_name is None or sink_name == "dry-run":
        from hal_logging.pipeline.sinks import resolve_sink_name

        sink_name = resolve_sink_name(dataclasses.replace(config, dry_run=False))
    if sink_name == "azure":
        endpoint = (config.endpoint or "").strip().rstrip("/").lower()
        return f"azure:{endpoint}|{(config.rule_id or '').strip()}|{config.stream}"
    if sink_name == "sqlite":
        from hal_logging.pipeline.sinks.sqlite import default_db_path

        return "sqlite:" + os.path.realpath(config.db or default_db_path())
    if sink_name == "jsonl":
        out = config.output
        return "jsonl:" + ("-" if out == "-" else os.path.realpath(out))
    if sink_name == "otlp":
        return "otlp:" + (config.otlp_endpoint or "").strip().rstrip("/")
    return sink_name


def local_by_accident(config: ForwardConfig, sink_name: str) -> bool:
    """True when the local workspace was picked only because nothing else was set."""
    return (
        sink_name == "sqlite"
        and config.sink == "auto"
        and not config.db  # --db or HAL_LOGGING_DB: asked for
        and not config.dry_run
    )


def refusal(config: ForwardConfig, sink_name: str) -> str | None:
    """Why this run must not start (an Azure VM without ingestion settings), or None.

    Reads DMI first: off Azure this is two small file reads and no network
    call; only a machine whose DMI says Azure asks IMDS (once, cached, 1 s).
    """
    if not local_by_accident(config, sink_name):
        return None
    from hal_logging.azure.vm import is_running_in_azure_vm

    if not is_running_in_azure_vm():
        return None
    return (
        f"this is an Azure VM, but no ingestion settings are given: set {ENDPOINT_ENV} and "
        f"{RULE_ENV} (or --endpoint and --rule-id); to write the local workspace on purpose, "
        "pass --sink sqlite or --db PATH (nothing was shipped)"
    )


__all__ = ["destination_id", "local_by_accident", "refusal"]
