"""``hal-logging-forward`` flags: config, environment fallbacks, usage errors, sinks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hal_logging import schema
from hal_logging.cli.forward import UsageError, config_from_args, parse_command_env
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.runner import trusted_context
from hal_logging.pipeline.sinks import SinkConfigError, resolve_sink_name

from .forward_helpers import run_forward, wire_line


def test_flags_fill_the_config_and_env_fills_the_rest() -> None:
    env = {
        "AZURE_MONITOR_DATA_COLLECTION_ENDPOINT": "https://dce.example",
        "AZURE_MONITOR_DATA_COLLECTION_RULE_ID": "dcr-123",
        "AZURE_MONITOR_STREAM_NAME": "Custom-X",
        "HAL_LOGGING_DB": "/tmp/x.db",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    }
    cfg = config_from_args(
        [
            "--run-id",
            "R",
            "--log-type",
            "VMOperation",
            "--batch-bytes",
            "64K",
            "--logger-level",
            "httpx=warning",
            "--sample",
            "noisy=0.1",
            "--min-level",
            "info",
            "a.log",
            "b.log",
        ],
        env,
    )
    assert cfg.files == ["a.log", "b.log"] and not cfg.command
    assert cfg.context == {"RunID": "R", "LogType": "VMOperation"}
    assert (
        cfg.endpoint == "https://dce.example"
        and cfg.rule_id == "dcr-123"
        and cfg.stream == "Custom-X"
    )
    assert cfg.db == "/tmp/x.db" and cfg.otlp_endpoint == "http://127.0.0.1:4318"
    assert cfg.batch_bytes == 65536 and cfg.logger_levels == {"httpx": "WARNING"}
    assert cfg.sample == {"noisy": 0.1} and cfg.min_level == "INFO"
    assert resolve_sink_name(cfg) == "azure"
    cfg2 = config_from_args(["--endpoint", "https://flag", "--stream", "S", "x.log"], env)
    assert cfg2.endpoint == "https://flag" and cfg2.stream == "S"
    assert config_from_args(["x.log"], {}).stream == schema.STREAM_NAME


def test_every_config_field_has_a_flag() -> None:
    from hal_logging.cli.forward import build_parser

    dests = {a.dest for a in build_parser()._actions}
    internal = {
        "files",
        "command",
        "context",
        "command_env",
        "notes",
    }  # positional, after --, context flags, parsed from CMD, warnings from parsing CMD
    missing = [
        f for f in ForwardConfig.__dataclass_fields__ if f not in dests and f not in internal
    ]
    assert missing == []
    for col in schema.CONTEXT_COLUMNS:
        assert f"ctx_{col.name}" in dests


def test_wrap_mode_command_env_is_parsed_and_trusted() -> None:
    argv = [
        "--run-id",
        "R-flag",
        "--",
        "docker",
        "run",
        "--rm",
        "-e",
        "HAL_RUN_ID=R-cmd",
        "--env",
        "HAL_TASK_ID=T-cmd",
        "--env=OPENAI_API_KEY=sk-x",
        "-eHAL_BENCHMARK=swe",
        "-e",
        "PASSTHRU",
        "image",
        "python",
        "-e",
    ]
    cfg = config_from_args(argv, {"PASSTHRU": "from-vm"})
    assert cfg.command[:2] == ["docker", "run"]
    assert cfg.command_env == {
        "HAL_RUN_ID": "R-cmd",
        "HAL_TASK_ID": "T-cmd",
        "OPENAI_API_KEY": "sk-x",
        "HAL_BENCHMARK": "swe",
        "PASSTHRU": "from-vm",
    }
    trusted = trusted_context(cfg, {"HAL_AGENT_NAME": "vm-agent", "HAL_TASK_ID": "T-vm"})
    assert trusted["RunID"] == "R-flag"  # flag beats the command's -e
    assert trusted["TaskID"] == "T-vm"  # the VM's environment beats the command's -e
    assert trusted["Benchmark"] == "swe"  # only the command knew it
    assert trusted["AgentName"] == "vm-agent" and trusted["LogType"] == "AgentLog"
    assert parse_command_env(["-e", "NOT_SET"], {}) == {}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "nothing to forward"),
        (["a.log", "--", "cmd"], "not both"),
        (["--follow", "a.log", "b.log"], "exactly one"),
        (["--until-pid", "1", "a.log"], "only apply with --follow"),
        (["--raw-log", "r", "a.log"], "wrap mode"),
        (["--"], "nothing after"),
        (["--sample", "x=2", "a.log"], "between 0 and 1"),
        (["--logger-level", "x", "a.log"], "NAME=VALUE"),
        (["--batch-rows", "0", "a.log"], "at least 1"),
    ],
)
def test_usage_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        config_from_args(argv, {})


def test_usage_errors_from_the_command_line_have_no_traceback(tmp_path: Path) -> None:
    for argv in (
        ["--follow"],
        ["--batch-rows", "x", "a.log"],
        ["--endpoint", "https://e", "a.log"],
        ["--bogus"],
    ):
        (tmp_path / "a.log").write_bytes(b"x\n")
        res = run_forward(argv, tmp_path)
        assert res.returncode == 2, (argv, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.strip()
    res = run_forward(["--endpoint", "https://e", "a.log"], tmp_path)
    assert "--rule-id" in res.stderr  # says what to set


def test_sink_resolution() -> None:
    assert resolve_sink_name(ForwardConfig()) == "sqlite"
    assert resolve_sink_name(ForwardConfig(dry_run=True, endpoint="e", rule_id="r")) == "dry-run"
    with pytest.raises(SinkConfigError, match="rule id"):
        resolve_sink_name(ForwardConfig(endpoint="https://e"))
    assert resolve_sink_name(ForwardConfig(sink="jsonl")) == "jsonl"


def test_jsonl_sink_to_stdout_and_file(tmp_path: Path) -> None:
    (tmp_path / "in.log").write_bytes(b"\n".join(wire_line(i) for i in range(3)) + b"\nplain\n")
    res = run_forward(["--sink", "jsonl", "--run-id", "R", "in.log"], tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 4 and all(list(r) == list(schema.COLUMN_NAMES) for r in rows)
    assert "_hal" not in res.stdout and all(r["RunID"] == "R" for r in rows)
    assert not (tmp_path / "hal-logs.db").exists()
    res = run_forward(
        ["--sink", "jsonl", "--output", "out.jsonl", "--no-checkpoint", "in.log"], tmp_path
    )
    assert res.returncode == 0 and len((tmp_path / "out.jsonl").read_text().splitlines()) == 4


def test_checkpoint_in_use_is_refused(tmp_path: Path) -> None:
    import fcntl
    import os

    (tmp_path / "in.log").write_bytes(wire_line(1) + b"\n")
    fd = os.open(tmp_path / "in.log.hal-checkpoint.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = run_forward(["in.log"], tmp_path)
    finally:
        os.close(fd)
    assert res.returncode == 1 and "in use by another" in res.stderr


def test_summary_json_to_stdout(tmp_path: Path) -> None:
    (tmp_path / "in.log").write_bytes(wire_line(1, level="ERROR") + b"\n")
    res = run_forward(["--summary-json", "-", "-q", "in.log"], tmp_path)
    assert res.returncode == 0 and res.stderr == ""
    s = json.loads(res.stdout)
    assert s["rows_by_level"]["ERROR"] == 1 and s["sink"] == "sqlite"
    assert sys.executable  # the module ran under this interpreter
