"""``hal-logging``: the umbrella command (docs/contract.md §4).

Subcommands::

    hal-logging query     read the local workspace          (hal_logging.cli.query)
    hal-logging emulator  local stand-in for Azure Monitor  (hal_logging.emulator.cli)
    hal-logging schema    table and DCR definitions         (hal_logging.azure.schema_cli)
    hal-logging azure-setup  create the Azure resources     (hal_logging.azure.setup_cli)
    hal-logging forward   same as hal-logging-forward       (hal_logging.cli.forward)
    hal-logging report    one run as a self-contained HTML  (hal_logging.cli.report)

Each subcommand module is imported only when chosen, so ``hal-logging query``
never imports the Azure SDK.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "query": ("hal_logging.cli.query", "read rows from the local workspace", ""),
    "forward": ("hal_logging.cli.forward", "ship output (same as hal-logging-forward)", ""),
    "emulator": (
        "hal_logging.emulator.cli",
        "serve a local stand-in for the Logs Ingestion API and IMDS",
        "pip install 'hal-logging[emulator]'",
    ),
    "schema": (
        "hal_logging.azure.schema_cli",
        "print the table and DCR definitions",
        "pip install 'hal-logging[azure]'",
    ),
    "azure-setup": (
        "hal_logging.azure.setup_cli",
        "create the Azure resources (packaged setup-logging.sh; --export DIR for Bicep)",
        "",
    ),
    "report": (
        "hal_logging.cli.report",
        "write one run as a self-contained HTML page",
        "pip install 'hal-logging[report]'",
    ),
}

USAGE = (
    "usage: hal-logging {query,emulator,schema,azure-setup,forward,report} [ARGS...]"
    "   (hal-logging COMMAND --help)"
)


def _help() -> str:
    lines = [USAGE, "", "commands:"]
    lines += [f"  {name:<12} {desc}" for name, (_, desc, _) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help())
        return 0 if args else 2
    if args[0] == "--version":
        from hal_logging import __version__

        print(f"hal-logging {__version__}")
        return 0
    name, rest = args[0], args[1:]
    entry = SUBCOMMANDS.get(name)
    if entry is None:
        print(f"hal-logging: unknown command {name!r}\n{_help()}", file=sys.stderr)
        return 2
    module_name, _, hint = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        where = (
            "is not part of this installation yet"
            if missing.startswith("hal_logging")
            else (f"needs {missing!r}" + (f": {hint}" if hint else ""))
        )
        print(f"hal-logging: the '{name}' command {where}", file=sys.stderr)
        return 2
    func: Callable[[list[str]], int] | None = getattr(module, "main", None)
    if func is None:
        print(
            f"hal-logging: the '{name}' command is not available ({module_name}.main missing)",
            file=sys.stderr,
        )
        return 2
    result = func(rest)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
