"""Drive the system's headless Chromium over the DevTools protocol (CDP), on loopback only.

Why not Playwright: it wants a browser build of its own, which cannot be
downloaded here; the Debian ``chromium`` package plus a websocket client is
all CDP needs, and what runs is the real browser.

Chromium is started with ``--remote-debugging-port=0`` (it picks a free port
and writes it to ``DevToolsActivePort`` in its profile folder) and with every
background network feature off; the page's own requests are recorded from
``Network.requestWillBeSent`` events so a test can assert there were none.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

from tests.waiting import stop_process, wait_for

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process and one page (tab) driven over CDP."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 1000) -> None:
        self.profile = profile
        self.proc = subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.events: list[dict[str, Any]] = []
        self._next = 0
        port_file = profile / "DevToolsActivePort"
        try:
            wait_for(
                lambda: port_file.exists() and len(port_file.read_text().splitlines()) >= 2,
                30,
                "Chromium's DevToolsActivePort",
            )
            port = int(port_file.read_text().splitlines()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t.get("type") == "page")
            self.ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
            )
        except BaseException:
            self.close()
            raise
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")

    # -- protocol --------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        mid = self._next
        self.ws.settimeout(30)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """The first event ``method`` not yet taken (reading more from the socket as needed)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and not ev.get("_taken"):
                    ev["_taken"] = True
                    self.events[i] = ev
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} event within {timeout}s")
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    # -- conveniences ------------------------------------------------------------------

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type ``text`` as keyboard input (fires real input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(png)
        return png

    def requests(self) -> list[str]:
        return [
            ev["params"]["request"]["url"]
            for ev in self.events
            if ev.get("method") == "Network.requestWillBeSent"
        ]

    def log_entries(self) -> list[str]:
        """Browser log and console messages (CSP violations are reported here)."""
        out = []
        for ev in self.events:
            if ev.get("method") == "Log.entryAdded":
                out.append(str(ev["params"]["entry"].get("text", "")))
            elif ev.get("method") == "Runtime.consoleAPICalled":
                out.append(" ".join(str(a.get("value", "")) for a in ev["params"]["args"]))
            elif ev.get("method") == "Runtime.exceptionThrown":
                out.append(str(ev["params"]["exceptionDetails"]))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        stop_process(self.proc, 10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def require_browser() -> bool:
    """CI sets HAL_LOGGING_REQUIRE_BROWSER=1: a missing Chromium is then a failure."""
    return os.environ.get("HAL_LOGGING_REQUIRE_BROWSER") == "1"
