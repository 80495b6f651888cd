"""``hal-logging report``: one run of the local workspace as one self-contained HTML file.

The file needs no server and fetches nothing, so it can be attached to an issue
or copied off a VM. ``--follow`` rewrites it while the run goes on (atomically:
a reader never sees half a page) and the page reloads itself.

Exit status: 0 the file was written; 1 the workspace is missing or unreadable,
the run has no rows (without ``--follow``), or the file cannot be written;
2 a usage error. Each problem is one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from hal_logging.cli._types import float_at_least, int_at_least
from hal_logging.pipeline.config import DEFAULT_PRICE_PER_GB
from hal_logging.report import data
from hal_logging.report.render import render

PROG = "hal-logging report"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write one run of the local workspace as one self-contained HTML page "
        "(no server, no network): outcomes, a sortable task table, and each task's "
        "timeline and log.",
        epilog=(
            "examples:\n"
            "  hal-logging report --run-id R1 -o r1.html\n"
            "  hal-logging report --run-id R1 --follow --interval 10   # while the run goes on"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-id", required=True, metavar="ID", help="the run to report on")
    p.add_argument(
        "--db", metavar="PATH", help="workspace file (env HAL_LOGGING_DB, default ./hal-logs.db)"
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="the HTML file (default report-RUN_ID.html)"
    )
    p.add_argument(
        "--tail-rows",
        type=_non_negative,
        default=data.DEFAULT_TAIL_ROWS,
        metavar="N",
        help=f"log rows kept per task, its last ones (default {data.DEFAULT_TAIL_ROWS}; "
        "the first errors are kept too)",
    )
    p.add_argument(
        "--max-rows",
        type=_non_negative,
        default=data.DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"log rows in the page at most, over all tasks (default {data.DEFAULT_MAX_ROWS}); "
        "tasks that failed or logged errors get theirs first",
    )
    p.add_argument(
        "--price-per-gb",
        type=float,
        default=DEFAULT_PRICE_PER_GB,
        metavar="USD",
        help=f"for the cost estimate (default {DEFAULT_PRICE_PER_GB}: {data.PRICE_NOTE})",
    )
    p.add_argument(
        "--follow", "-f", action="store_true", help="rewrite the file until Ctrl-C or SIGTERM"
    )
    p.add_argument(
        "--interval",
        type=_positive,
        default=5.0,
        metavar="S",
        help="--follow: seconds between rewrites (default 5)",
    )
    return p


_non_negative = int_at_least(0)
_positive = float_at_least(0, strict=True)


def default_output(run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"
    return f"report-{safe[:100]}.html"


def write_atomically(path: str, text: str) -> int:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``; bytes written."""
    raw = text.encode("utf-8")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise data.ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return len(raw)


def _once(
    ns: argparse.Namespace, db: str, out: str, follow: float | None, require_rows: bool = True
) -> tuple[data.Run, int]:
    conn = data.connect(db)
    try:
        run = data.load_run(
            conn,
            ns.run_id,
            db=db,
            tail_rows=ns.tail_rows,
            max_rows=ns.max_rows,
            price_per_gb=ns.price_per_gb,
        )
        if not run.tasks and require_rows:
            runs = data.known_runs(conn)
            hint = f" (recent runs: {', '.join(runs)})" if runs else " (the workspace is empty)"
            raise data.ReportError(f"no rows for run {ns.run_id!r} in {db}{hint}")
    finally:
        conn.close()
    return run, write_atomically(out, render(run, follow_interval=follow))


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    db = ns.db or os.environ.get("HAL_LOGGING_DB") or "hal-logs.db"
    out = ns.output or default_output(ns.run_id)
    try:
        if not ns.follow:
            started = time.monotonic()
            run, size = _once(ns, db, out, None)
            _say(
                f"wrote {out}: {len(run.tasks)} tasks, {run.rows} rows "
                f"({run.shown_rows} in the page), {size / 1e6:.1f} MB, "
                f"in {time.monotonic() - started:.1f} s"
            )
            return 0
        return _follow(ns, db, out)
    except data.ReportError as exc:
        _say(str(exc))
        return 1


def _follow(ns: argparse.Namespace, db: str, out: str) -> int:
    """Rewrite ``out`` every ``--interval`` seconds until SIGINT or SIGTERM, then once more.

    The last write carries no reload, so the page left behind is a plain report.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _once(ns, db, out, ns.interval, False)  # the first write's errors are the user's to fix
        _say(f"following run {ns.run_id!r}: rewriting {out} every {ns.interval:g} s (Ctrl-C stops)")
        last_error = ""
        while not stop.wait(ns.interval):
            try:
                _once(ns, db, out, ns.interval, False)
                last_error = ""
            except data.ReportError as exc:  # e.g. a locked or replaced workspace: try again
                if str(exc) != last_error:
                    _say(f"{exc} (trying again)")
                last_error = str(exc)
        run, _ = _once(ns, db, out, None, False)
        _say(f"stopped following; {out} holds {len(run.tasks)} tasks, {run.rows} rows")
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
