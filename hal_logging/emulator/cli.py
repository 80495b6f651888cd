"""``hal-logging emulator``: run the local stand-in until interrupted.

Prints the environment a client needs (``export ...`` lines) so a user can try
the whole Azure path without Azure::

    hal-logging emulator --db emu.db --ca-out /tmp/emu-ca.pem --fault 429=0.1 &
    eval "$(...the printed export lines...)"
    hal-logging-forward run.log
    hal-logging query --db emu.db
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hal_logging import _json
from hal_logging.emulator.faults import FAULT_KINDS, FaultPlan, parse_fault
from hal_logging.emulator.server import DEFAULT_RULE_ID, Emulator, EmulatorConfig
from hal_logging.schema import STREAM_NAME


def build_parser() -> argparse.ArgumentParser:
    kinds = "\n".join(f"  {k:<20} {v}" for k, v in FAULT_KINDS.items())
    p = argparse.ArgumentParser(
        prog="hal-logging emulator",
        description="Local stand-in for the Azure Logs Ingestion API (HTTPS) and the VM's IMDS (HTTP).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"fault kinds:\n{kinds}\n\nAt runtime: GET /_emulator/stats, POST /_emulator/faults "
        '(JSON: {"rates": {...}, "script": [...], "down": "503" | null, "forbidden": bool}).',
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=0, help="HTTPS ingestion port (default: any free port)"
    )
    p.add_argument(
        "--imds-port", type=int, default=0, help="HTTP IMDS port (default: any free port)"
    )
    p.add_argument("--no-imds", action="store_true", help="do not serve IMDS")
    p.add_argument(
        "--db",
        default="hal-emulator.db",
        help="workspace file for accepted rows (default hal-emulator.db)",
    )
    p.add_argument("--ca-dir", help="keep the CA here and reuse it on the next start")
    p.add_argument("--ca-out", help="write the CA certificate (PEM) here for REQUESTS_CA_BUNDLE")
    p.add_argument("--env-out", help="write the client environment as JSON here once listening")
    p.add_argument(
        "--rule-id",
        action="append",
        help=f"accepted DCR immutable id (repeatable; default {DEFAULT_RULE_ID})",
    )
    p.add_argument("--any-rule", action="store_true", help="accept any dcr-... rule id")
    p.add_argument(
        "--stream", action="append", help=f"declared stream (repeatable; default {STREAM_NAME})"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="inject a fault at a rate (repeatable)",
    )
    p.add_argument("--seed", type=int, help="seed of the fault RNG (reproducible runs)")
    p.add_argument(
        "--retry-after", type=float, default=1.0, help="Retry-After seconds on 429/503 (default 1)"
    )
    p.add_argument(
        "--slow", type=float, default=2.0, help="delay of the 'slow' fault in seconds (default 2)"
    )
    p.add_argument(
        "--down",
        choices=sorted(FAULT_KINDS),
        help="start in an outage: every request gets this fault",
    )
    p.add_argument(
        "--forbidden", action="store_true", help="answer 403 as when the role is missing"
    )
    p.add_argument("--any-token", action="store_true", help="accept any bearer token")
    p.add_argument(
        "--tolerate-oversize",
        action="store_true",
        help="accept bodies over 1,048,576 bytes (still counted)",
    )
    p.add_argument(
        "--discard", action="store_true", help="check and count rows but store none (benchmarks)"
    )
    p.add_argument(
        "--client-id", action="append", help="user-assigned identities IMDS knows (default: any)"
    )
    p.add_argument("--vm-name", help="compute.name in the instance metadata")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="one line per ingestion request on stderr"
    )
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    rates: dict[str, float] = {}
    for spec in args.fault:
        kind, rate = parse_fault(spec)
        rates[kind] = rate
    faults = FaultPlan(
        rates=rates,
        seed=args.seed,
        retry_after=args.retry_after,
        slow_seconds=args.slow,
        down=args.down,
    )
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        imds_port=None if args.no_imds else args.imds_port,
        db=args.db,
        ca_dir=args.ca_dir,
        ca_out=args.ca_out,
        rule_ids=() if args.any_rule else tuple(args.rule_id or (DEFAULT_RULE_ID,)),
        streams=tuple(args.stream or (STREAM_NAME,)),
        forbidden=args.forbidden,
        strict_auth=not args.any_token,
        tolerate_oversize=args.tolerate_oversize,
        store=not args.discard,
        faults=faults,
        client_ids=tuple(args.client_id or ()),
    )
    if args.vm_name:
        config.instance["compute"]["name"] = args.vm_name
    if args.verbose:
        config.on_request = _print_request
    return config


def _print_request(info: dict[str, Any]) -> None:
    print(
        f"{info['status'] or 'cut'} rows={info['rows']} gz={info['compressed_bytes']} "
        f"raw={info['uncompressed_bytes']} fault={info['fault'] or '-'}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import trustme  # noqa: F401  (the test CA: only in the [emulator] extra)
    except ImportError:
        print(
            "hal-logging emulator: needs the test-CA library 'trustme', which production "
            "installs leave out: pip install 'hal-logging[emulator]'",
            file=sys.stderr,
        )
        return 2
    try:
        config = config_from_args(args)
        emulator = Emulator(config)
        emulator.start()
    except (ValueError, OSError) as exc:
        print(f"hal-logging emulator: {exc}", file=sys.stderr)
        return 2
    env = emulator.env()
    if args.env_out:
        target = Path(args.env_out)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(
            _json.dumps({**env, "HAL_EMULATOR_DB": str(Path(config.db or "").resolve())})
        )
        os.replace(tmp, target)
    print(
        f"# hal-logging emulator: ingestion {emulator.endpoint}, IMDS {emulator.imds_url if config.imds_port is not None else 'off'}, workspace {config.db}"
    )
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    sys.stdout.flush()

    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not done.wait(0.5):
            pass
    finally:
        emulator.close()
        stats = emulator.stats()
        print(
            f"# hal-logging emulator: {stats['requests']} requests, {stats['rows_accepted']} rows accepted, "
            f"{stats['rows_stored']} stored, statuses {stats['status']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
