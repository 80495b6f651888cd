"""Imports go down the house: redaction below its users, the parser's rooms in order.

Read from the source (every import, lazy ones inside functions included), so a
module that reaches back up fails here even if no test happens to run that
function. And importing the redaction package stays light: the container side
(``otel.py``) uses it, and the Aho-Corasick extension is only loaded when a
Redactor is built.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hal_logging"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; this package uses no relative ones)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("hal_logging")}


HIGHER_THAN_REDACTION = (
    "hal_logging.pipeline",
    "hal_logging.azure",
    "hal_logging.cli",
    "hal_logging.emulator",
    "hal_logging.report",
    "hal_logging.otel",
)


@pytest.mark.parametrize(
    "path",
    [*sorted((PACKAGE / "redaction").glob("*.py")), PACKAGE / "otel.py"],
    ids=lambda p: p.name,
)
def test_redaction_and_its_container_side_user_import_nothing_above_them(path: Path) -> None:
    own = "hal_logging.otel" if path.name == "otel.py" else None
    upward = sorted(m for m in _imports(path) if m.startswith(HIGHER_THAN_REDACTION) and m != own)
    assert upward == [], f"{path.relative_to(PACKAGE.parent)} imports up: {upward}"


#: The parser's rooms, lowest first: each may import only those before it.
PARSING_ROOMS = ("ids", "records", "held", "fastpath", "parser")


@pytest.mark.parametrize("room", PARSING_ROOMS)
def test_parsing_rooms_import_only_rooms_below_them(room: str) -> None:
    base = "hal_logging.pipeline.parsing"
    imported = _imports(PACKAGE / "pipeline" / "parsing" / f"{room}.py")
    above = PARSING_ROOMS[PARSING_ROOMS.index(room) :]
    upward = sorted(
        m
        for m in imported
        if any(m == f"{base}.{r}" or m.startswith(f"{base}.{r}.") for r in above)
    )
    assert upward == [], f"parsing/{room}.py imports a room at or above it: {upward}"
    # Names taken from the package itself must be its modules (``docker``): the
    # face re-exports the rooms, so a room importing from it would be a cycle.
    from_face = sorted(
        m
        for m in imported
        if m.startswith(f"{base}.")
        and not (PACKAGE / "pipeline" / "parsing" / f"{m.split('.')[3]}.py").exists()
    )
    assert from_face == [], f"parsing/{room}.py imports from the package's face: {from_face}"


def test_metering_does_not_import_the_report() -> None:
    imported = _imports(PACKAGE / "pipeline" / "metering.py")
    assert "hal_logging.pipeline.summary" not in imported


def test_importing_redaction_loads_no_extension_and_no_pipeline() -> None:
    code = (
        "import sys, hal_logging.redaction\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ahocorasick', "
        "'hal_logging.pipeline', 'hal_logging.azure'))))"
    )
    loaded = subprocess.check_output([sys.executable, "-c", code], text=True, timeout=60)
    assert loaded.strip() == "[]"
