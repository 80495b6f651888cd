"""A fake Azure CLI (``az``) for running the setup script all the way through, offline.

It answers the calls ``setup-logging.sh`` makes the way the real CLI does
(``--query ... -o tsv`` values, "show" failing for what does not exist yet,
"create" making it exist), keeps what exists in a state file so a second run
sees the first one's resources, and records every call with the request body
it was given (``--body @FILE``). A table ``PUT`` is held to the rules of the
table plans, as the Tables API holds it: Auxiliary only with api-version
``2023-01-01-preview``, no ``dynamic`` column there, no switch to or from
Auxiliary for an existing table, total retention 4-730 days or whole years.
Anything else it does not know fails loudly,
so a script change that calls something new shows up in the tests.

Only the client is faked: nothing here reaches Azure, and the tests check the
requests (table and DCR bodies, the role assignment) rather than trusting them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SUBSCRIPTION_ID = "00000000-1111-2222-3333-444444444444"
DCE_ENDPOINT = "https://hal-logs-dce-fake.westeurope-1.ingest.monitor.azure.com"
DCR_IMMUTABLE_ID = "dcr-00112233445566778899aabbccddeeff"
PRINCIPAL_ID = "99999999-8888-7777-6666-555555555555"
CLIENT_ID = "12345678-aaaa-bbbb-cccc-1234567890ab"

_PROGRAM = r"""
import json, sys
from pathlib import Path

STATE = Path(__STATE__)
CALLS = Path(__CALLS__)
V = __VALUES__


def opt(args, name):
    return args[args.index(name) + 1] if name in args else None


YEARS = (1095, 1460, 1826, 2191, 2556, 2922, 3288, 3653, 4018, 4383)


def table_problem(url, body, existing_plan):
    # What the Tables API would refuse in this PUT (the rules of the plans), or None.
    api = url.partition("api-version=")[2]
    props = body.get("properties", {})
    plan = props.get("plan", "Analytics")
    columns = props.get("schema", {}).get("columns", [])
    total = props.get("totalRetentionInDays")
    if plan not in ("Analytics", "Basic", "Auxiliary"):
        return f"(InvalidParameter) unknown plan {plan}"
    if plan == "Auxiliary" and api != "2023-01-01-preview":
        return f"(InvalidParameter) plan Auxiliary needs api-version 2023-01-01-preview, not {api}"
    if plan == "Auxiliary" and any(c.get("type") == "dynamic" for c in columns):
        return "(InvalidParameter) tables with the Auxiliary plan do not support dynamic columns"
    if existing_plan and existing_plan != plan and "Auxiliary" in (plan, existing_plan):
        return f"(InvalidParameter) the plan of a table cannot change from {existing_plan} to {plan}"
    if total is not None and not (4 <= total <= 730 or total in YEARS):
        return f"(InvalidParameter) totalRetentionInDays {total} is not allowed"
    return None


def main(args):
    body = opt(args, "--body")
    entry = {"argv": args}
    if body and body.startswith("@"):
        entry["body"] = Path(body[1:]).read_text()
    with CALLS.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    query = opt(args, "--query")
    words = [a for a in args if not a.startswith("-")][:4]

    def save():
        STATE.write_text(json.dumps(state))

    if args[:2] == ["account", "show"]:
        print(V["sub"] if query == "id" else json.dumps({"id": V["sub"]}))
        return 0
    if args[:2] in (["account", "set"], ["group", "create"]):
        return 0
    if words[:3] == ["monitor", "log-analytics", "workspace"]:
        rg, name = opt(args, "-g"), opt(args, "-n")
        ws = f"/subscriptions/{V['sub']}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{name}"
        if words[3] == "show" and not state.get("workspace"):
            print(f"(ResourceNotFound) workspace {name} not found", file=sys.stderr)
            return 3
        state["workspace"] = ws
        save()
        print(ws)
        return 0
    if args[:1] == ["rest"]:
        if opt(args, "--method") != "put" or not body:
            print("fake az: rest without --method put --body", file=sys.stderr)
            return 2
        try:
            parsed = json.loads(entry["body"])
        except ValueError:
            print("(BadRequest) body is not JSON", file=sys.stderr)
            return 1
        url = opt(args, "--url") or ""
        if "/tables/" in url:
            problem = table_problem(url, parsed, state.get("table"))
            if problem:
                print(problem, file=sys.stderr)
                return 1
            state["table"] = parsed["properties"].get("plan", "Analytics")
            save()
        if query == "properties.logsIngestion.endpoint":
            print(V["dce"])
        elif query == "properties.immutableId":
            print(V["dcr"])
        return 0
    if args[:1] == ["identity"]:
        if args[1] == "show" and not state.get("identity"):
            print("(ResourceNotFound) identity not found", file=sys.stderr)
            return 3
        state["identity"] = True
        save()
        print(V["client"] if query == "clientId" else V["principal"])
        return 0
    if args[:3] == ["vm", "identity", "assign"]:
        print(V["principal"])
        return 0
    if args[:3] == ["role", "assignment", "list"]:
        print(len(state.get("roles", [])))
        return 0
    if args[:3] == ["role", "assignment", "create"]:
        state.setdefault("roles", []).append([opt(args, "--role"), opt(args, "--scope")])
        save()
        return 0
    print(f"fake az: unknown command {' '.join(args)}", file=sys.stderr)
    return 2


sys.exit(main(sys.argv[1:]))
"""


def install(directory: Path) -> tuple[Path, Path]:
    """Write ``directory/bin/az``; return (the bin folder for PATH, the calls log)."""
    bindir = directory / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    calls = directory / "az-calls.jsonl"
    values = {
        "sub": SUBSCRIPTION_ID,
        "dce": DCE_ENDPOINT,
        "dcr": DCR_IMMUTABLE_ID,
        "principal": PRINCIPAL_ID,
        "client": CLIENT_ID,
    }
    program = (
        _PROGRAM.replace("__STATE__", repr(str(directory / "az-state.json")))
        .replace("__CALLS__", repr(str(calls)))
        .replace("__VALUES__", repr(values))
    )
    az = bindir / "az"
    az.write_text(f"#!{sys.executable}\n{program}")
    az.chmod(0o755)
    return bindir, calls


def calls(log: Path) -> list[dict[str, Any]]:
    """The recorded calls, in order: ``{"argv": [...], "body": "..."}``."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def table_requests(log: Path) -> list[dict[str, Any]]:
    """The table PUTs, each as what the tests check: api-version, plan, columns, retention."""
    found = []
    for call in calls(log):
        argv = call["argv"]
        if argv[:1] != ["rest"] or "--url" not in argv:
            continue
        url = argv[argv.index("--url") + 1]
        if "/tables/" not in url:
            continue
        props = json.loads(call["body"])["properties"]
        found.append(
            {
                "url": url,
                "api_version": url.partition("api-version=")[2],
                "plan": props.get("plan"),
                "columns": [(c["name"], c["type"]) for c in props["schema"]["columns"]],
                "retentionInDays": props.get("retentionInDays"),
                "totalRetentionInDays": props.get("totalRetentionInDays"),
            }
        )
    return found
