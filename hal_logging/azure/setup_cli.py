"""``hal-logging azure-setup``: the Azure resources, from what ``pip install`` put on disk.

The infrastructure (``setup-logging.sh``, ``main.bicep``, ``columns.json``) lives
in the repository's ``infrastructure/azure`` folder and is copied into the wheel
as package data (``hal_logging/infrastructure/azure``), so an operator who only
ran ``pip install`` has it too, with no clone. Running the same bash script
rather than a Python rewrite of its ``az`` calls keeps one implementation:
the script in the repository and the command in the wheel cannot drift.

- ``hal-logging azure-setup [OPTIONS]`` runs ``setup-logging.sh`` with them
  (``-g RG --identity-name NAME``, ``--dry-run``, ``--help``...). The script asks
  for the table and DCR bodies from ``hal-logging schema``; here it is pointed
  at this very interpreter (``HAL_LOGGING_SCHEMA``), so it works from a
  virtualenv that is not on PATH.
- ``hal-logging azure-setup --export DIR`` writes the files to DIR, for
  ``az deployment group create -f DIR/main.bicep`` (``columns.json`` freshly
  generated from :mod:`hal_logging.schema`).
- ``hal-logging azure-setup --where`` prints the folder the files are read from.

Needs ``bash`` and the Azure CLI (``az``, logged in); the script says so in
one line when either is missing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

PROG: Final = "hal-logging azure-setup"
SCRIPT: Final = "setup-logging.sh"
#: The files a deployment needs; the folder may hold more (all are exported).
REQUIRED: Final = (SCRIPT, "main.bicep", "columns.json")

USAGE: Final = f"""usage: {PROG} [setup-logging.sh OPTIONS]     create or update the Azure resources
       {PROG} --export DIR                  write main.bicep, columns.json, the script to DIR
       {PROG} --where                       print the folder they are read from

Runs the packaged infrastructure/azure/setup-logging.sh (az CLI, idempotent):
  {PROG} -g hal-rg -l eastus --identity-name hal-logs-identity
  {PROG} --dry-run -g hal-rg --identity-name hal-logs-identity   (prints the az calls)
  {PROG} -g hal-rg --identity-name NAME --plan basic --total-retention-days 365
  {PROG} --help                                                  (the script's options)"""


class SetupError(Exception):
    """What is missing, said in one line."""


def infrastructure_dir() -> Path:
    """Where the infrastructure files are: package data in a wheel, the repository in a checkout.

    A wheel carries them under ``hal_logging/infrastructure/azure``; an editable
    install (a checkout) reads the repository's ``infrastructure/azure`` itself.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (
        package / "infrastructure" / "azure",
        package.parent / "infrastructure" / "azure",
    ):
        if all((candidate / name).is_file() for name in REQUIRED):
            return candidate
    raise SetupError(
        f"the infrastructure files ({', '.join(REQUIRED)}) are not in this installation "
        f"(looked in {package / 'infrastructure' / 'azure'}): reinstall hal-logging from a "
        "wheel or a git URL built with them"
    )


def schema_command() -> str:
    """``HAL_LOGGING_SCHEMA`` for the script: this interpreter's ``hal-logging schema``.

    The script splits the value on blanks (bash ``read -a``), so an interpreter
    path with a blank falls back to ``hal-logging schema`` on PATH.
    """
    exe = sys.executable
    if not exe or any(ch.isspace() for ch in exe):
        return "hal-logging schema"
    return f"{exe} -m hal_logging.azure.schema_cli"


def export(target: Path) -> list[Path]:
    """Copy the infrastructure files to ``target``; ``columns.json`` comes from the schema."""
    from hal_logging.azure import schema_cli

    source = infrastructure_dir()
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for item in sorted(source.iterdir()):
        if not item.is_file():
            continue
        dest = target / item.name
        if item.name == "columns.json":
            dest.write_text(schema_cli.render(schema_cli.bicep_inputs()), encoding="utf-8")
        else:
            shutil.copyfile(item, dest)
            if item.suffix == ".sh":
                dest.chmod(0o755)
        written.append(dest)
    return written


def run_script(args: list[str]) -> int:
    """Run the packaged ``setup-logging.sh`` with ``args``; its exit status."""
    bash = shutil.which("bash")
    if bash is None:
        raise SetupError("needs bash to run setup-logging.sh: install bash, or use --export DIR")
    script = infrastructure_dir() / SCRIPT
    env = dict(os.environ)
    env.setdefault("HAL_LOGGING_SCHEMA", schema_command())
    try:
        return subprocess.run([bash, str(script), *args], env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["--where"]:
            print(infrastructure_dir())
            return 0
        if args and (args[0] == "--export" or args[0].startswith("--export=")):
            values = args[1:] if args[0] == "--export" else [args[0].split("=", 1)[1], *args[1:]]
            if len(values) != 1 or not values[0]:
                raise SetupError("--export takes one folder: --export DIR")
            value = values[0]
            for path in export(Path(value)):
                print(path)
            print(
                f"# deploy with: az deployment group create -g RESOURCE_GROUP "
                f"-f {shlex.quote(str(Path(value) / 'main.bicep'))} -p identityName=NAME",
                file=sys.stderr,
            )
            return 0
        if args[:1] in (["-h"], ["--help"]):
            print(USAGE + "\n")
            sys.stdout.flush()
        return run_script(args)
    except SetupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
