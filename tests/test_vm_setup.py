"""setup_logging(): file + console everywhere, Azure only on an Azure VM with settings."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from hal_logging.azure import setup as setup_mod
from hal_logging.azure import vm
from hal_logging.azure.setup import AzureSettingsError, setup_logging
from tests.vm_helpers import imds_server, make_dmi


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in setup_mod.NOISY_LOGGERS}
    vm.clear_cache()
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        if getattr(h, "_hal_setup_logging", False):
            h.close()
    for h in saved_handlers:
        root.addHandler(h)
    root.setLevel(saved_level)
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)
    vm.clear_cache()


def rows(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_off_azure_file_and_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAL_BENCHMARK", "corebench")
    console = io.StringIO()
    with imds_server() as stub:  # would answer, but must not be asked
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        result = setup_logging(
            tmp_path / "logs",
            "runs/run-42",
            use_vm=True,
            console_stream=console,
            context={"task_id": "t7"},
        )
        logging.getLogger("harness").warning("task %s failed", "t7", extra={"attempt": 2})
    assert stub.count == 0
    assert result.azure_handler is None and result.on_azure is False
    assert result.log_file == (tmp_path / "logs" / "run-42.log").resolve()
    for h in result.handlers:
        h.flush()
    written = rows(result.log_file)
    by_message = {r["Message"]: r for r in written}
    assert "Azure Monitor logging skipped: not running on an Azure VM" in by_message
    row = by_message["task t7 failed"]
    assert row["_hal"] == 1
    assert row["RunID"] == "runs/run-42" and row["TaskID"] == "t7"
    assert row["Benchmark"] == "corebench" and row["LogType"] == "VMOperation"
    assert row["Level"] == "WARNING" and row["LoggerName"] == "harness"
    assert row["Properties"]["attempt"] == 2  # type: ignore[index]
    text = console.getvalue()
    assert (
        "harness: task t7 failed" in text and "{" not in text.split("harness:")[1].splitlines()[0]
    )


def test_without_use_vm_nothing_is_probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dmi(tmp_path / "dmi")  # even on an "Azure" machine
    monkeypatch.setenv(vm.DMI_DIR_ENV, str(tmp_path / "dmi"))
    with imds_server() as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        result = setup_logging(tmp_path, "r1", console=False)
    assert stub.count == 0 and result.azure_handler is None
    assert [type(h) for h in logging.getLogger().handlers] == [logging.FileHandler]


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["AZURE_MONITOR_DATA_COLLECTION_ENDPOINT", "AZURE_MONITOR_DATA_COLLECTION_RULE_ID"]),
        (
            {"AZURE_MONITOR_DATA_COLLECTION_ENDPOINT": "https://dce.example"},
            ["AZURE_MONITOR_DATA_COLLECTION_RULE_ID"],
        ),
        (
            {
                "AZURE_MONITOR_DATA_COLLECTION_RULE_ID": "dcr-1",
                "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT": "  ",
            },
            ["AZURE_MONITOR_DATA_COLLECTION_ENDPOINT"],
        ),
    ],
)
def test_on_azure_missing_settings_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: list[str]
) -> None:
    monkeypatch.setenv(vm.DMI_DIR_ENV, str(make_dmi(tmp_path / "dmi")))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    before = list(root.handlers)
    with imds_server() as stub:
        monkeypatch.setenv(vm.IMDS_URL_ENV, stub.url)
        with pytest.raises(AzureSettingsError) as exc:
            setup_logging(tmp_path / "logs", "r1", use_vm=True)
    message = str(exc.value)
    for name in missing:
        assert name in message
    for name in {
        "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT",
        "AZURE_MONITOR_DATA_COLLECTION_RULE_ID",
    } - set(missing):
        assert name not in message.split("is not set")[0].split("are not set")[0]
    assert "setup-logging.sh" in message
    assert root.handlers == before  # nothing changed
    assert not (tmp_path / "logs").exists()


def test_second_call_replaces_and_closes(tmp_path: Path) -> None:
    first = setup_logging(tmp_path / "a", "r1", console=False)
    second = setup_logging(tmp_path / "b", "r2", console=False)
    root = logging.getLogger()
    assert root.handlers == second.handlers
    file_handler = first.handlers[0]
    assert isinstance(file_handler, logging.FileHandler) and file_handler.stream is None  # closed
    logging.getLogger("x").info("only in the second file")
    for h in second.handlers:
        h.flush()
    assert "only in the second file" not in first.log_file.read_text()
    assert "only in the second file" in second.log_file.read_text()


def test_noisy_libraries_quieted_and_text_format(tmp_path: Path) -> None:
    logging.getLogger("urllib3").setLevel(logging.NOTSET)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.DEBUG)
    result = setup_logging(tmp_path, "r1", console=False, file_format="text", level="DEBUG")
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING
    assert (
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").level
        == logging.WARNING
    )
    assert logging.getLogger("azure.identity").getEffectiveLevel() == logging.WARNING
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")
    logging.getLogger("app").debug("kept at debug")
    result.handlers[0].flush()
    text = result.log_file.read_text()
    assert " - app - DEBUG - kept at debug" in text
    assert "Starting new HTTPS connection" not in text


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_format"):
        setup_logging(tmp_path, "r1", file_format="xml")
    with pytest.raises(TypeError, match="run_idd"):
        setup_logging(tmp_path, "r1", context={"run_idd": "x"})


def test_lazy_exports_keep_import_light() -> None:
    """The VM-side names load on first use and never pull in the Azure SDK by themselves."""
    import subprocess
    import sys

    code = (
        "import sys, hal_logging\n"
        "assert not [m for m in sys.modules if m.startswith(('azure', 'opentelemetry.sdk'))]\n"
        "from hal_logging.azure import handler, setup, vm\n"
        "assert hal_logging.AzureMonitorHandler is handler.AzureMonitorHandler\n"
        "assert hal_logging.setup_logging is setup.setup_logging\n"
        "assert hal_logging.vm_metadata is vm.vm_metadata\n"
        "assert hal_logging.is_running_in_azure_vm() is False\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('azure')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
