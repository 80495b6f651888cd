"""A :class:`~hal_logging.report.data.Run` as one self-contained HTML page.

Why Jinja2 with autoescape: every string in the page may come from the
container, which runs an AI agent and is untrusted. With autoescape on, a value
reaches the page escaped unless the code marks it safe, and only three things
are marked safe here: the package's own CSS and JavaScript, the SVG this module
draws from numbers, and JSON made safe for a ``<script>`` element by
:func:`script_json`.

Defence in depth: the page's Content-Security-Policy allows no source at all
(no fetch, no image, no font, no frame) and runs only the one script whose
SHA-256 it names, so even a ``<script>`` that slipped past escaping would not run,
and the page never reaches the network.

The log lines of a task travel as JSON and are turned into DOM nodes with
``textContent`` by the page's script when the task is opened: a large run's page
then loads fast (the browser parses one task's lines, not a million), and text
set that way is never parsed as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from importlib import resources
from typing import Any, Final

import jinja2
from markupsafe import Markup, escape

from hal_logging import _json, schema
from hal_logging.pipeline.summary import human_bytes
from hal_logging.report import data

_TEMPLATE: Final = "report.html.j2"
_SVG_W: Final = 720
_SVG_H: Final = 90
_PLOT_H: Final = 70


def _asset(name: str) -> str:
    return (resources.files("hal_logging.report") / "templates" / name).read_text("utf-8")


def script_json(value: Any) -> Markup:
    """JSON that is safe inside ``<script type="application/json">``.

    ``<`` ``>`` ``&`` only occur inside JSON strings, where ``\\u003c`` means the same,
    so ``</script>`` and ``<!--`` cannot end or confuse the element; U+2028 and
    U+2029 are escaped for older JavaScript parsers.
    """
    text = _json.dumps(value).decode("utf-8")
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)
    return Markup(text)


def _short_time(text: str) -> str:
    """``2026-12-06T08:37:51.646029Z`` -> ``08:37:51.646``."""
    return text[11:23] if len(text) >= 23 and text[10:11] == "T" else text


def _human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def timeline_svg(buckets: list[tuple[int, int, int]], start: str, end: str, title: str) -> Markup:
    """Rows (grey), warnings (amber) and errors (red) per bucket of time, as step areas.

    One ``<path>`` per series with ``V``/``H`` steps: about 10 bytes a bucket, so a
    thousand tasks' timelines stay small. Errors and warnings are drawn at least
    3 px high where there are any, so a single error in a busy bucket still shows.
    Only numbers and escaped labels go in.
    """
    n = len(buckets) or 1
    top = max((b[0] for b in buckets), default=0) or 1
    step = _SVG_W / n

    def path(k: int, floor: int) -> str:
        parts = [f"M0 {_PLOT_H}"]
        for i, b in enumerate(buckets):
            v = b[k]
            h = 0.0 if v <= 0 else max(float(floor), v / top * (_PLOT_H - 2))
            parts.append(f"V{_PLOT_H - h:.0f}H{(i + 1) * step:.0f}")
        parts.append(f"V{_PLOT_H}Z")
        return "".join(parts)

    label = escape(title)
    errors = sum(b[2] for b in buckets)
    warnings = sum(b[1] for b in buckets)
    svg = (
        f'<svg class="timeline" viewBox="0 0 {_SVG_W} {_SVG_H}" width="{_SVG_W}" '
        f'height="{_SVG_H}" role="img" aria-label="{label}"><title>{label}: '
        f"{sum(b[0] for b in buckets)} rows, {warnings} warnings, {errors} errors; "
        f"tallest bar {top} rows</title>"
        f'<rect x="0" y="0" width="{_SVG_W}" height="{_PLOT_H}" class="bg"/>'
        f'<path class="rows" d="{path(0, 1)}"/>'
        f'<path class="warn" d="{path(1, 3)}"/>'
        f'<path class="err" d="{path(2, 3)}"/>'
        f'<text x="0" y="{_SVG_H - 4}">{escape(start)}</text>'
        f'<text x="{_SVG_W}" y="{_SVG_H - 4}" text-anchor="end">{escape(end)}</text>'
        f'<text x="4" y="12" class="top">{top} rows</text>'
        "</svg>"
    )
    return Markup(svg)


def _lines_json(task: data.Task) -> Markup:
    rows: list[list[Any]] = []
    for ln in task.lines:
        exc = (
            [ln.exception.type, ln.exception.message, ln.exception.stacktrace]
            if ln.exception
            else None
        )
        rows.append([ln.time, ln.level, ln.logger, ln.message, ln.stream, exc, int(ln.claimed)])
    return script_json(rows)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hal_logging.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        bytes=human_bytes,
        seconds=_human_seconds,
        short_time=_short_time,
        status=data.describe_status,
    )
    return env


def render(run: data.Run, *, follow_interval: float | None = None) -> str:
    """The page. ``follow_interval``: the page reloads itself that often (``--follow``)."""
    js = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    run_svg = timeline_svg(
        run.timeline, _short_time(run.first), _short_time(run.last), "log volume over the run"
    )
    tasks = []
    for t in run.tasks:
        tasks.append(
            {
                "t": t,
                "svg": timeline_svg(
                    t.timeline, _short_time(t.first), _short_time(t.last), f"task {t.task_id}"
                ),
                "json": _lines_json(t),
            }
        )
    # The table starts with what went wrong: failed and killed, then unknown, then ok.
    rank = {"failed": 0, "killed": 0, "unknown": 1, "ok": 2}
    order = sorted(run.tasks, key=lambda t: (rank[t.outcome], -t.errors, t.task_id))
    table = [tasks[t.index] for t in order]
    return (
        _environment()
        .get_template(_TEMPLATE)
        .render(
            run=run,
            tasks=tasks,
            table=table,
            run_svg=run_svg,
            levels=schema.LEVELS,
            outcomes=data.OUTCOMES,
            outcome_labels=data.OUTCOME_LABELS,
            css=Markup(_asset("report.css")),
            js=Markup(js),
            csp=csp,
            follow_interval=follow_interval,
            query_hint=f"hal-logging query --run-id {shlex.quote(run.run_id)} --task-id TASK --limit 0",
        )
    )
