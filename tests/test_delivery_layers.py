"""The delivery floors import only downwards: a test that reads the import statements.

``hal_logging.delivery`` sits at the bottom with ``schema`` and ``_json``; the Azure
engine and the handler (``hal_logging.azure``) sit above it and below the
pipeline and the CLI, so the VM side's handler never loads the forwarder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hal_logging

PACKAGE = Path(hal_logging.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every ``hal_logging`` module a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name.startswith("hal_logging")}


def test_delivery_imports_only_the_bottom_floor() -> None:
    allowed = ("hal_logging._json", "hal_logging.schema", "hal_logging.delivery")
    for path in sorted((PACKAGE / "delivery").glob("*.py")):
        bad = {m for m in imports_of(path) if not m.startswith(allowed) and m != "hal_logging"}
        assert not bad, f"{path.name} imports {bad}"


def test_azure_never_imports_the_pipeline_or_the_cli() -> None:
    paths = sorted((PACKAGE / "azure").glob("*.py"))
    assert len(paths) > 10
    for path in paths:
        bad = {
            m for m in imports_of(path) if m.startswith(("hal_logging.pipeline", "hal_logging.cli"))
        }
        assert not bad, f"azure/{path.name} imports {bad}"
