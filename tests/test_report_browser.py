"""The report in a real browser: headless Chromium (Debian's package) over the DevTools protocol.

The workspace is made the real way: the demo's entrypoint run under
``hal-logging-forward`` for two tasks (one with ``--fail``), plus a task whose
output is hostile (``<script>``, an ``onerror`` image, HTML entities, ANSI
escapes, a 64 KB line, a traceback) and that exits 3, and a task killed by
SIGKILL. Then ``hal-logging report`` writes the page and Chromium opens it from
``file://``.

Checked in the browser: the task table shows the failed task's exit status and
first error; a screenshot is taken; level filtering and search (typed as keyboard
input) change what the log shows; the page makes no request but its own file;
hostile text is shown as text and no script from the data runs.

Without Chromium the tests skip with one line; with ``HAL_LOGGING_REQUIRE_BROWSER=1``
(CI) they fail instead. ``HAL_LOGGING_SCREENSHOT_DIR`` keeps the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_helpers import Browser, find_chromium, require_browser
from tests.forward_helpers import clean_env, run_cli
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
RUN = "demo-browser"
HOSTILE = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'

HOSTILE_TASK = f"""
import sys
print({HOSTILE!r})
print({IMG!r} + " &amp; &lt;b&gt; &#x3c;script&#x3e;")
print("\\x1b[31mred\\x1b[0m and a bell")
print("L" * 65536)
print("Traceback (most recent call last):")
print('  File "agent.py", line 3, in <module>')
print("ValueError: " + {HOSTILE!r})
sys.stdout.flush()
sys.exit(3)
"""

KILLED_TASK = "import os, signal; print('about to be killed', flush=True); os.kill(os.getpid(), signal.SIGKILL)"


def _forward(db: Path, task: str, *command: str) -> int:
    args = [
        sys.executable,
        "-m",
        "hal_logging.cli.forward",
        "--db",
        str(db),
        "--run-id",
        RUN,
        "--task-id",
        task,
        "--benchmark",
        "demo",
        "--agent-name",
        "example-agent",
        "--execution-mode",
        "local",
        "--",
        *command,
    ]
    res = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env({"HAL_RUN_ID": RUN, "HAL_TASK_ID": task, "HAL_AGENT_NAME": "example-agent"}),
        cwd=ROOT,
    )
    return res.returncode


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-browser")
    db = tmp / "hal-logs.db"
    example = str(ROOT / "examples" / "entrypoint.py")
    assert _forward(db, "task-1", sys.executable, example) == 0
    assert _forward(db, "task-2", sys.executable, example, "--fail") == 1
    assert _forward(db, "task-3", sys.executable, "-c", HOSTILE_TASK) == 3
    assert _forward(db, "task-4", sys.executable, "-c", KILLED_TASK) == 137
    out = tmp / "report.html"
    res = run_cli("report", "--db", str(db), "--run-id", RUN, "-o", str(out), timeout=120)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        if require_browser():
            pytest.fail(
                "HAL_LOGGING_REQUIRE_BROWSER=1 but no chromium on PATH (scripts/services installs it)"
            )
        pytest.skip("no chromium on PATH: the browser tests skip (apt-get install chromium)")
    with Browser(binary, tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


def _row_cells(b: Browser, task: str) -> dict[str, str]:
    """The task table's cells of ``task``, by column header."""
    return b.evaluate(
        "(() => { const heads = [...document.querySelectorAll('#task-table th')].map(h => h.textContent.trim());"
        " for (const r of document.querySelectorAll('#task-table tbody tr')) {"
        f"  if (r.cells[0].textContent.trim() === {json.dumps(task)}) {{"
        "    const o = {}; [...r.cells].forEach((c, i) => o[heads[i]] = c.textContent.trim()); return o; } }"
        " return null; })()"
    )


def _shown_lines(b: Browser, index: int) -> list[str]:
    return b.evaluate(
        f"[...document.querySelectorAll('#task-{index} .log .line')]"
        ".filter(l => !l.hidden && l.offsetParent !== null).map(l => l.textContent)"
    )


def _shown_levels(b: Browser, index: int) -> set[str]:
    return set(
        b.evaluate(
            f"[...document.querySelectorAll('#task-{index} .log .line')]"
            ".filter(l => !l.hidden && l.offsetParent !== null)"
            ".map(l => l.querySelector('.lv').textContent)"
        )
    )


def _open_task(b: Browser, index: int) -> list[str]:
    """Click the task's link; its log is drawn when the page handles the hash change."""
    b.click(f'#task-table a[href="#task-{index}"]')
    return wait_for(lambda: _shown_lines(b, index), 10, f"task {index}'s log drawn")


def _task_index(b: Browser, task: str) -> int:
    href = b.evaluate(
        "[...document.querySelectorAll('#task-table tbody tr a')]"
        f".find(a => a.textContent.trim() === {json.dumps(task)}).getAttribute('href')"
    )
    return int(href.removeprefix("#task-"))


def test_task_table_shows_the_failed_task_and_a_screenshot(
    browser: Browser, report: Path, tmp_path: Path
) -> None:
    browser.open(report.as_uri())
    failed = _row_cells(browser, "task-2")
    assert failed["outcome"] == "failed" and failed["exit status"] == "1"
    assert failed["first error"] == "task failed: the answer did not pass the checker"
    assert _row_cells(browser, "task-1")["exit status"] == "0"
    assert _row_cells(browser, "task-4")["exit status"] == "137 (killed by SIGKILL)"
    hostile = _row_cells(browser, "task-3")
    assert hostile["exit status"] == "3"
    assert hostile["first error"] == f"ValueError: {HOSTILE}"  # shown as text
    tiles = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#outcomes .tile')]"
        ".map(t => [t.dataset.outcome, Number(t.querySelector('b').textContent)]))"
    )
    assert tiles == {"ok": 1, "failed": 2, "killed": 1, "unknown": 0}
    shot = tmp_path / "report-table.png"
    png = browser.screenshot(shot)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    keep = os.environ.get("HAL_LOGGING_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)


def test_level_filter_and_search_change_the_log(browser: Browser, report: Path) -> None:
    browser.open(report.as_uri())
    index = _task_index(browser, "task-2")
    every = _open_task(browser, index)
    assert len(every) == 14
    assert browser.evaluate(f"document.querySelector('#task-{index} .log-shown').textContent") == (
        "14 of 14 rows shown"
    )
    # Uncheck INFO with a mouse click: only the warning and the errors stay.
    browser.click(f'#task-{index} .lv-toggle[value="INFO"]')
    wait_for(lambda: _shown_levels(browser, index) == {"WARNING", "ERROR"}, 10, "INFO hidden")
    browser.click(f'#task-{index} .lv-toggle[value="INFO"]')
    wait_for(lambda: len(_shown_lines(browser, index)) == 14, 10, "INFO shown again")
    # Type a search: only matching rows stay (the traceback's text is searched too).
    browser.type_into(f"#task-{index} .log-search", "FileNotFoundError")
    wait_for(lambda: len(_shown_lines(browser, index)) == 1, 10, "the search applied")
    found = _shown_lines(browser, index)
    assert "tool failed, the agent will retry" in found[0]
    # The traceback is folded: summary shown, stack inside a closed <details>.
    folded = browser.evaluate(
        f"[...document.querySelectorAll('#task-{index} .log details.exc')].map(d => [d.open, d.querySelector('summary').textContent])"
    )
    assert folded == [[False, "ToolError: tool 'run_tests' failed at step 1"]]
    browser.type_into(f"#task-{index} .log-search", "-no-such-text-")
    wait_for(lambda: _shown_lines(browser, index) == [], 10, "nothing matches")
    if keep := os.environ.get("HAL_LOGGING_SCREENSHOT_DIR"):
        browser.evaluate(f"document.querySelector('#task-{index} .log-search').value = ''")
        browser.evaluate(
            f"document.querySelector('#task-{index} .log-search').dispatchEvent(new Event('input'))"
        )
        browser.screenshot(Path(keep) / "report-task.png")


def test_hostile_text_stays_text_and_nothing_is_fetched(browser: Browser, report: Path) -> None:
    browser.events.clear()
    browser.open(report.as_uri())
    index = _task_index(browser, "task-3")
    lines = _open_task(browser, index)
    text = "\n".join(lines)
    assert HOSTILE in text and IMG in text
    assert "&amp; &lt;b&gt; &#x3c;script&#x3e;" in text  # entities shown as typed, not decoded
    assert "red and a bell" in text and "\x1b" not in text  # the forwarder drops ANSI
    long_line = next(line for line in lines if "LLLL" in line)
    assert "cut in the report" in long_line and len(long_line) < 20_000
    shown = browser.evaluate(  # its start shown, the whole (cut) text folded
        f"[...document.querySelectorAll('#task-{index} .log .line')].filter(l => l.querySelector('details.more'))"
        ".map(l => [l.querySelector('.m').textContent.length, l.querySelector('details.more').open])"
    )
    assert shown == [[602, False]]
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('.log script, .log img').length") == 0
    exc = browser.evaluate(
        f"[...document.querySelectorAll('#task-{index} .log details.exc summary')].map(s => s.textContent)"
    )
    assert exc == [f"ValueError: {HOSTILE}"]
    # Only the page itself was requested; no script was refused either (nothing tried).
    assert set(browser.requests()) == {report.as_uri()}
    assert not [e for e in browser.log_entries() if "Content Security Policy" in e]
    csp = browser.evaluate(
        "document.querySelector('meta[http-equiv=Content-Security-Policy]').content"
    )
    assert csp.startswith("default-src 'none'")
