"""The package's house, checked: imports only go down, no cycles, modules of one idea.

Every module of ``hal_logging`` is parsed (not imported: parsing sees the
imports a function makes only when it runs, and those under
``TYPE_CHECKING``, as well as the module-level ones) and its imports of
``hal_logging`` modules become the edges of a graph. The test fails on:

* a cycle between modules (a module that, through others, imports itself);
* an import from a lower floor to a higher one (:data:`FLOORS`, bottom
  first), unless it is in :data:`KNOWN_UPWARD`;
* a module over :data:`MAX_LINES` lines unless :data:`ONE_IDEA` says why
  it is one idea.

A new module must be given a floor: a module no entry of :data:`FLOORS`
covers is a failure too, so the house is declared, never guessed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "hal_logging"

#: The floors of the house, bottom first: a module may import its own floor
#: and the floors below it. An entry covers the module of that name and the
#: modules under it; the longest entry that covers a module wins.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    # The row's contract and its one JSON codec: everything may use them.
    ("base", ("hal_logging._json", "hal_logging.schema")),
    # What runs inside the agent's container: context and its formatting,
    # and the table plans (facts about the table, no I/O).
    ("container side", ("hal_logging.context", "hal_logging.formatter", "hal_logging.plans")),
    # Shared pieces of delivery (DeliveryError, Row, the durable wire-line
    # file) and redaction (Redactor and its patterns): below every user.
    ("shared delivery and redaction", ("hal_logging.delivery", "hal_logging.redaction")),
    # Clients of a destination: Azure's uploader, handler and VM facts, the
    # OpenTelemetry bridge, and the HTTPS stand-in for Azure.
    ("clients", ("hal_logging.azure", "hal_logging.otel", "hal_logging.emulator")),
    # The logging face a program in the container calls (configure, the
    # adapter, ``import hal_logging``): chooses among the clients.
    ("logging face", ("hal_logging.configure", "hal_logging.adapter", "hal_logging")),
    # The forwarder's vocabulary: the model, configs, outcomes, and the small
    # mechanisms every stage uses (checkpoints, framing, batching, the spool).
    (
        "pipeline vocabulary",
        (
            "hal_logging.pipeline",
            "hal_logging.pipeline.model",
            "hal_logging.pipeline.config",
            "hal_logging.pipeline.settings",
            "hal_logging.pipeline.outcome",
            "hal_logging.pipeline.checkpoint",
            "hal_logging.pipeline.framing",
            "hal_logging.pipeline.batching",
            "hal_logging.pipeline.spool",
            "hal_logging.pipeline.metering",
        ),
    ),
    # The components: each a package a new source, parser, filter or sink goes in.
    (
        "pipeline components",
        (
            "hal_logging.pipeline.parsing",
            "hal_logging.pipeline.filters",
            "hal_logging.pipeline.sources",
            "hal_logging.pipeline.sinks",
            "hal_logging.pipeline.summary",
            # wrap mode's journal (a source that replays it) and the archive of
            # the exact bytes (reads journals back): components of the run.
            "hal_logging.pipeline.journal",
            "hal_logging.archive",
        ),
    ),
    # The run: the loop over the components, and what a run is bound to.
    (
        "pipeline run",
        (
            "hal_logging.pipeline.runner",
            "hal_logging.pipeline.destination",
            "hal_logging.pipeline.signals",
        ),
    ),
    # Assembly: a whole run from a config; the reports read what runs stored.
    ("assembly", ("hal_logging.pipeline.assemble", "hal_logging.report")),
    # Commands: argument parsing, printing, exit statuses.
    (
        "commands",
        (
            "hal_logging.cli",
            "hal_logging.azure.setup_cli",
            "hal_logging.azure.schema_cli",
            "hal_logging.emulator.cli",
        ),
    ),
]

#: Entries that cover only the package of that name, not the modules under it
#: (every module is ``hal_logging.*``: the root must not be a catch-all).
EXACT_ONLY = frozenset({"hal_logging", "hal_logging.pipeline"})

#: Upward imports other branches of the redesign are removing right now; the
#: merge that lands them empties this set (an entry that is no longer in the
#: graph fails the test, so the set cannot go stale).
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()  # none left: keep it that way

MAX_LINES = 400

#: Modules over MAX_LINES lines, each with why it is one idea (or who is
#: splitting it). A module that shrinks below the limit must leave the list.
ONE_IDEA: dict[str, str] = {
    # One idea each:
    "hal_logging.cli.forward": "the forwarder's command line: its flags, their help and checks",
    "hal_logging.cli.query": "the query command: its flags and the queries they make",
    "hal_logging.configure": "configure(): one entry point and the handlers it wires",
    "hal_logging.formatter": "the container's log formatters (JSON and console) and their handler",
    "hal_logging.emulator.server": "the Azure stand-in's HTTPS server: one request handler",
    "hal_logging.report.data": "the report's queries over the workspace",
    "hal_logging.pipeline.runner": "the pipeline loop and its in-order checkpoint commits",
    "hal_logging.pipeline.sources.command": "wrap mode's command: spawn, pipes, stop, status",
    "hal_logging.pipeline.sources.container": "a followed container: its log, its stop, its status",
    "hal_logging.pipeline.journal": "the journal's one framing: writer, reader and the replay source",
    "hal_logging.pipeline.assemble": "one run from a config, step by step in the order it happens",
    "hal_logging.azure.sender": "the handler's sender: one queue, one thread, its flush and close",
}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module ``name`` lives in (``a.b.C`` -> ``a.b`` when C is not a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every hal_logging module ``module`` imports, wherever the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the submodule when there is one.
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for name in names:
            if name == "hal_logging" or name.startswith("hal_logging."):
                target = _resolve(name)
                if target is not None and target != module:
                    yield target


GRAPH: dict[str, set[str]] = {m: set(_imports(m, p)) for m, p in MODULES.items()}


def floor_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (entry length, floor)
    for level, (_, entries) in enumerate(FLOORS):
        for entry in entries:
            covers = module == entry or (entry not in EXACT_ONLY and module.startswith(entry + "."))
            if covers and (best is None or len(entry) > best[0]):
                best = (len(entry), level)
    return None if best is None else best[1]


def test_every_module_has_a_floor() -> None:
    homeless = sorted(m for m in MODULES if floor_of(m) is None)
    assert not homeless, f"declare a floor in FLOORS for: {', '.join(homeless)}"


def test_no_upward_import() -> None:
    upward = []
    for module, targets in GRAPH.items():
        low = floor_of(module)
        for target in targets:
            high = floor_of(target)
            if low is None or high is None or high <= low:
                continue
            if (module, target) not in KNOWN_UPWARD:
                upward.append(f"{module} ({FLOORS[low][0]}) imports {target} ({FLOORS[high][0]})")
    assert not upward, "imports up the house:\n" + "\n".join(sorted(upward))


def test_known_upward_imports_still_exist() -> None:
    """A fixed upward import must leave KNOWN_UPWARD, so the list says what is left."""
    gone = sorted(f"{a} -> {b}" for a, b in KNOWN_UPWARD if b not in GRAPH.get(a, set()))
    assert not gone, "no longer imported, remove from KNOWN_UPWARD: " + ", ".join(gone)


def _cycle() -> list[str] | None:
    """One cycle of the graph, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == 1:
                return [*path[path.index(t) :], t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_modules_are_one_idea() -> None:
    long = sorted(
        f"{m} ({_lines(p)} lines)"
        for m, p in MODULES.items()
        if _lines(p) > MAX_LINES and m not in ONE_IDEA
    )
    assert not long, (
        f"modules over {MAX_LINES} lines: split them, or say in ONE_IDEA why each is one "
        "idea: " + ", ".join(long)
    )


@pytest.mark.parametrize("module", sorted(ONE_IDEA))
def test_one_idea_list_is_current(module: str) -> None:
    """An entry for a module that is gone or now short must leave ONE_IDEA."""
    assert module in MODULES, f"{module} no longer exists: remove it from ONE_IDEA"
    assert _lines(MODULES[module]) > MAX_LINES, f"{module} is short now: remove it from ONE_IDEA"


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks can fail: a graph with a planted cycle and a planted upward import."""
    saved = dict(GRAPH)
    try:
        GRAPH["hal_logging.schema"] = GRAPH["hal_logging.schema"] | {"hal_logging.cli.forward"}
        assert _cycle() is not None
        with pytest.raises(AssertionError, match=r"hal_logging\.schema"):
            test_no_upward_import()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
