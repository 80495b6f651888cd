"""configure() in real interpreters: stdout pipes, SIGKILL, hooks, env (issue 2)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .container_helpers import ROOT, clean_env, run_python, strict_loads, wire_row, wire_rows

CTX_ENV = {
    "HAL_RUN_ID": "run-7",
    "HAL_TASK_ID": "task-3",
    "HAL_BENCHMARK": "corebench",
    "HAL_AGENT_NAME": "agent-x",
    "HAL_VM_NAME": "vm-1",
    "HAL_EXECUTION_MODE": "docker",
    "EXECUTED_BY": "alice",
}


def test_context_columns_come_from_the_environment() -> None:
    proc = run_python(
        """
        import hal_logging
        hal_logging.configure()
        hal_logging.get_logger("a").info("hi")
        """,
        env=clean_env(**CTX_ENV),
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = wire_rows(proc.stdout)
    assert row["RunID"] == "run-7" and row["TaskID"] == "task-3" and row["Benchmark"] == "corebench"
    assert row["AgentName"] == "agent-x" and row["VMName"] == "vm-1"
    assert row["ExecutionMode"] == "docker" and row["ExecutedBy"] == "alice"
    assert row["LogType"] == "AgentLog"
    assert proc.stderr == ""


def test_configure_overrides_win_over_the_environment_under_any_spelling() -> None:
    proc = run_python(
        """
        import hal_logging
        hal_logging.configure(run_id="r-arg", TaskID="t-arg", HAL_LOG_TYPE="Custom", vm_name=None)
        hal_logging.get_logger("a").info("hi")
        try:
            hal_logging.configure(run_idd="typo")
        except TypeError as err:
            print("TypeError:", err)
        """,
        env=clean_env(**CTX_ENV),
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = wire_rows(proc.stdout)
    assert (row["RunID"], row["TaskID"], row["LogType"], row["VMName"]) == (
        "r-arg",
        "t-arg",
        "Custom",
        "vm-1",
    )
    assert "TypeError: unknown context field(s) 'run_idd'" in proc.stdout


def test_every_record_is_on_stdout_before_a_sigkill_and_print_keeps_its_place() -> None:
    """stdout is a pipe (block-buffered by default); the process kills itself right
    after logging, so only what was flushed by then can arrive."""
    proc = run_python(
        """
        import os, signal, sys, threading, hal_logging
        hal_logging.configure()
        log = hal_logging.get_logger("order")
        for i in range(50):
            log.info("log %d", i)
            print(f"print {i}")
            if i % 10 == 0:
                print("partial ", end="")
                print("line", i)
        t = threading.Thread(target=lambda: log.info("from thread"))
        t.start(); t.join()
        log.info("last words")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert proc.returncode == -signal.SIGKILL
    lines = proc.stdout.split("\n")
    assert lines[-1] == ""  # ends on a complete line
    expected: list[str] = []
    for i in range(50):
        expected += [f"LOG log {i}", f"print {i}"]
        if i % 10 == 0:
            expected.append(f"partial line {i}")
    expected += ["LOG from thread", "LOG last words"]
    got = [
        f"LOG {wire_row(line)['Message']}" if line.startswith("{") else line for line in lines[:-1]
    ]
    assert got == expected


def test_configure_twice_gives_no_duplicates_and_replaces_basicconfig() -> None:
    proc = run_python(
        """
        import logging, sys, hal_logging
        logging.basicConfig(stream=sys.stdout, format="TEXT %(message)s")
        logging.basicConfig()  # no-op, root already has a handler
        hal_logging.configure()
        hal_logging.configure()
        logging.getLogger("x").warning("once")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["Message"] for r in wire_rows(proc.stdout)] == ["once"]
    assert "TEXT" not in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize(
    ("arg", "env", "shown"),
    [
        ("None", "", ["info", "warning"]),  # default INFO
        ("None", "DEBUG", ["debug", "info", "warning"]),
        ("None", "warning", ["warning"]),
        ("None", "30", ["warning"]),
        ("'DEBUG'", "ERROR", ["debug", "info", "warning"]),  # the argument wins
        ("logging.WARNING", "", ["warning"]),
    ],
)
def test_level_from_argument_or_hal_log_level(arg: str, env: str, shown: list[str]) -> None:
    proc = run_python(
        f"""
        import logging, hal_logging
        hal_logging.configure(level={arg})
        log = hal_logging.get_logger("lvl")
        log.debug("debug"); log.info("info"); log.warning("warning")
        """,
        env=clean_env(HAL_LOG_LEVEL=env) if env else clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["Message"] for r in wire_rows(proc.stdout)] == shown


def test_bad_level_in_environment_is_reported_not_fatal() -> None:
    proc = run_python(
        "import hal_logging; hal_logging.configure(); hal_logging.get_logger('x').info('still here')",
        env=clean_env(HAL_LOG_LEVEL="LOUD"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = wire_rows(proc.stdout)
    assert "HAL_LOG_LEVEL='LOUD'" in rows[0]["Message"] and rows[0]["Level"] == "WARNING"
    assert rows[1]["Message"] == "still here"


def test_bad_level_argument_raises_a_helpful_error() -> None:
    proc = run_python("import hal_logging; hal_logging.configure(level='LOUD')")
    assert proc.returncode == 1
    assert "use a level number or one of DEBUG" in proc.stderr


def test_uncaught_exception_in_main_thread_is_one_json_record_and_exit_1() -> None:
    proc = run_python(
        """
        import hal_logging
        hal_logging.configure()
        def agent():
            try:
                {}["k"]
            except KeyError as err:
                raise RuntimeError("agent crashed") from err
        agent()
        """
    )
    assert proc.returncode == 1
    assert proc.stderr == ""  # no bare traceback: it is in the record
    (row,) = wire_rows(proc.stdout)
    assert row["Level"] == "CRITICAL" and row["LoggerName"] == "uncaught"
    exc = row["Properties"]["exception"]
    assert exc["type"] == "RuntimeError" and exc["message"] == "agent crashed"
    assert "direct cause" in exc["stacktrace"] and "KeyError" in exc["stacktrace"]
    assert row["Properties"]["src"] == "<string>:agent:8"  # the raise (line 1 is blank)


def test_uncaught_exception_in_a_thread_is_logged() -> None:
    proc = run_python(
        """
        import threading, hal_logging
        hal_logging.configure()
        def work():
            raise ValueError("thread failed")
        t = threading.Thread(target=work, name="worker-1")
        t.start(); t.join()
        hal_logging.get_logger("main").info("main goes on")
        """
    )
    assert proc.returncode == 0 and proc.stderr == ""
    first, second = wire_rows(proc.stdout)
    assert first["Level"] == "ERROR" and "worker-1" in first["Message"]
    assert first["Properties"]["exception"]["type"] == "ValueError"
    assert first["Properties"]["thread_name"] == "worker-1"
    assert second["Message"] == "main goes on"


def test_asyncio_errors_are_logged() -> None:
    proc = run_python(
        """
        import asyncio, gc, hal_logging
        hal_logging.configure()

        async def lost():
            raise ValueError("never retrieved")

        async def main():
            hal_logging.configure()  # inside a running loop: installs the loop handler
            t = asyncio.get_running_loop().create_task(lost())
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            del t
            gc.collect()
            raise LookupError("escaped asyncio.run")

        asyncio.run(main())
        """
    )
    assert proc.returncode == 1 and proc.stderr == ""
    rows = wire_rows(proc.stdout)
    lost = [r for r in rows if r["LoggerName"] == "asyncio"]
    assert len(lost) == 1
    assert lost[0]["Message"] == "Task exception was never retrieved"
    assert lost[0]["Properties"]["exception"]["type"] == "ValueError"
    assert "future" in lost[0]["Properties"]["asyncio"]
    escaped = [r for r in rows if r["LoggerName"] == "uncaught"]
    assert escaped[0]["Properties"]["exception"]["type"] == "LookupError"


def test_asyncio_errors_are_logged_without_the_loop_handler_too() -> None:
    proc = run_python(
        """
        import asyncio, gc, hal_logging
        hal_logging.configure()
        async def lost():
            raise ValueError("never retrieved")
        async def main():
            t = asyncio.get_running_loop().create_task(lost())
            await asyncio.sleep(0); await asyncio.sleep(0)
            del t
            gc.collect()
        asyncio.run(main())
        """
    )
    assert proc.returncode == 0 and proc.stderr == ""
    (row,) = wire_rows(proc.stdout)
    assert row["LoggerName"] == "asyncio" and row["Level"] == "ERROR"
    assert row["Properties"]["exception"]["type"] == "ValueError"


def test_warnings_become_records() -> None:
    proc = run_python(
        """
        import warnings, hal_logging
        hal_logging.configure()
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
        warnings.warn("careful")
        """,
        env=clean_env(PYTHONWARNINGS="always"),
    )
    assert proc.returncode == 0 and proc.stderr == ""
    rows = wire_rows(proc.stdout)
    assert [r["LoggerName"] for r in rows] == ["py.warnings", "py.warnings"]
    assert "DeprecationWarning: deprecated thing" in rows[0]["Message"]
    assert "UserWarning: careful" in rows[1]["Message"] and rows[1]["Level"] == "WARNING"


def test_console_format_by_env_and_json_forced_on_a_terminal() -> None:
    code = "import hal_logging; hal_logging.configure(); hal_logging.get_logger('h').info('hello', extra={'n': 1})"
    proc = run_python(code, env=clean_env(HAL_LOG_FORMAT="console"))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert not line.startswith("{") and "INFO" in line and "h: hello" in line and "n=1" in line
    forced = _run_on_tty(code, clean_env(HAL_LOG_FORMAT="json"))
    (json_line,) = [ln for ln in forced.decode().splitlines() if ln.strip()]
    assert wire_row(json_line.rstrip("\r"))["Message"] == "hello"


def _run_on_tty(code: str, env: dict[str, str]) -> bytes:
    """Run with stdout on a pseudo-terminal; return everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=follower, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(10)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return out


def test_tty_default_is_the_console_format(tmp_path: Path) -> None:
    # A person's machine: the container probe looks at an empty tree (these test
    # machines are containers themselves; tests/test_configure_tty.py covers that side).
    out = _run_on_tty(
        "import hal_logging; hal_logging.configure(); hal_logging.get_logger('h').info('hello')",
        clean_env(HAL_LOGGING_PROBE_ROOT=str(tmp_path)),
    ).decode()
    assert "h: hello" in out and '{"_hal"' not in out


def test_non_utf8_stdout_still_gets_valid_json() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hal_logging; hal_logging.configure(); hal_logging.get_logger('x').info('naïve ☃ 🎉')",
        ],
        capture_output=True,
        env=clean_env(PYTHONIOENCODING="ascii"),
        cwd=ROOT,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.decode("ascii").strip()
    assert wire_row(line)["Message"] == "naïve ☃ 🎉"


def test_otel_hook_is_called_with_root_and_context_when_an_endpoint_is_set() -> None:
    proc = run_python(
        """
        import logging, sys, types, hal_logging
        calls = []
        fake = types.ModuleType("hal_logging.otel")
        def install_otel_handler(root, context):
            calls.append((root is logging.getLogger(), dict(context)))
            h = logging.NullHandler(); root.addHandler(h); return h
        fake.install_otel_handler = install_otel_handler
        sys.modules["hal_logging.otel"] = fake
        hal_logging.configure(run_id="r-otel")
        hal_logging.configure(run_id="r-otel")
        print("CALLS", len(calls), calls[0][0], calls[0][1]["RunID"])
        print("NULL", sum(isinstance(h, logging.NullHandler) for h in logging.getLogger().handlers))
        """,
        env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "CALLS 2 True r-otel" in proc.stdout
    assert "NULL 1" in proc.stdout  # the second configure() replaced the first handler


def test_otel_unavailable_is_one_warning_record_and_logging_goes_on() -> None:
    proc = run_python(
        """
        import sys, hal_logging
        sys.modules["hal_logging.otel"] = None  # as if the module were missing
        hal_logging.configure()
        hal_logging.get_logger("x").info("after")
        """,
        env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
    )
    assert proc.returncode == 0, proc.stderr
    warning, after = wire_rows(proc.stdout)
    assert warning["Level"] == "WARNING" and "OTEL_EXPORTER_OTLP_ENDPOINT" in warning["Message"]
    assert after["Message"] == "after"


def test_import_and_configure_stay_light() -> None:
    proc = run_python(
        """
        import sys, hal_logging
        hal_logging.configure()
        heavy = sorted(
            m for m in sys.modules if m.startswith(("azure", "opentelemetry", "asyncio", "docker"))
        )
        print("HEAVY", heavy)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_strict_helper_can_fail() -> None:
    with pytest.raises(ValueError):
        strict_loads("[Infinity]")


def test_stdout_closed_sends_the_record_to_stderr() -> None:
    proc = run_python(
        """
        import sys, hal_logging
        hal_logging.configure()
        sys.stdout.close()
        hal_logging.get_logger("x").error("stdout is gone")
        """
    )
    assert proc.returncode in (0, 120), proc.stderr  # 120: flushing the closed stdout at exit
    row = wire_row(next(ln for ln in proc.stderr.splitlines() if ln.startswith("{")))
    assert row["Message"] == "stdout is gone"


def test_example_paths_exist() -> None:  # guards the example test below against a rename
    assert (Path(ROOT) / "examples" / "entrypoint.py").is_file()


def test_bound_fields_survive_formatting_in_another_thread() -> None:
    """QueueHandler/QueueListener format records in the listener's thread: the
    fields bound where the record was created must still be there."""
    proc = run_python(
        """
        import logging, logging.handlers, queue, hal_logging
        from hal_logging.formatter import JsonFormatter, StdoutHandler
        hal_logging.configure()
        root = logging.getLogger()
        stdout_handler = next(h for h in root.handlers if isinstance(h, StdoutHandler))
        q = queue.SimpleQueue()
        root.handlers[:] = [logging.handlers.QueueHandler(q)]
        listener = logging.handlers.QueueListener(q, stdout_handler)
        listener.start()
        with hal_logging.bind(step=5, task_id="t-q"):
            logging.getLogger("q").info("queued")
        listener.stop()
        """
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = wire_rows(proc.stdout)
    assert row["Properties"]["step"] == 5 and row["TaskID"] == "t-q"


def test_reset_undoes_configure() -> None:
    import logging
    import threading

    from hal_logging.configure import configure, reset

    before = (
        sys.excepthook,
        threading.excepthook,
        logging.getLogRecordFactory(),
        list(logging.getLogger().handlers),
        logging.getLogger().level,
    )
    try:
        configure(format="json", capture_warnings=False)
        assert sys.excepthook is not before[0] and threading.excepthook is not before[1]
        assert logging.getLogRecordFactory() is not before[2]
    finally:
        reset()
        logging.getLogger().setLevel(before[4])
    assert sys.excepthook is before[0] and threading.excepthook is before[1]
    assert logging.getLogRecordFactory() is before[2]
    assert all(h in before[3] for h in logging.getLogger().handlers)
