"""`poolhub coordinator-stub` and `poolhub bench billing`; heavy imports wait until a command runs."""

from __future__ import annotations

import argparse
import sys


def _coordinator_stub(args: argparse.Namespace) -> None:
    from poolhub.app.coordinator_stub import run_stub
    from poolhub.app.settings import SettingsError, load_settings

    api_key = args.api_key
    if api_key is None:
        try:
            api_key = load_settings().coordinator_api_key
        except SettingsError as exc:
            sys.exit(f"poolhub: invalid configuration: {exc}")
    print(
        f"poolhub: coordinator billing stub on http://{args.host}:{args.port} "
        f"({'bearer key required' if api_key else 'no key required'}); "
        f"switches: POST /_stub/control, state: GET /_stub/state",
        flush=True,
    )
    run_stub(args.host, args.port, api_key or None, quiet=args.quiet)


def _bench_billing(args: argparse.Namespace) -> None:
    from poolhub.app.bench_billing import main

    main(args)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stub = commands.add_parser(
        "coordinator-stub",
        help="run a stand-in for the coordinator's billing API (idempotent on Idempotency-Key)",
        description="The three coordinator billing routes, in memory, with switches to fail or delay "
        "(POST /_stub/control {fail_status, fail_mode, delay_ms, reject_resource_types, hang_seconds}).",
    )
    stub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    stub.add_argument("--port", type=int, default=8011, help="port (default 8011)")
    stub.add_argument(
        "--api-key",
        help="bearer key the stub requires (default COORDINATOR_API_KEY from the environment or .env; "
        "empty: none required)",
    )
    stub.add_argument("--quiet", action="store_true", help="no access log")
    stub.set_defaults(handler=_coordinator_stub)


def register_bench_billing(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`poolhub bench billing`."""
    bench = kinds.add_parser(
        "billing",
        help="seed N pending usage lines and time one full sync to the coordinator stub",
        description="Seeds N pending ledger lines (under a miner id of their own, removed afterwards) into "
        "the database, syncs them to the stub and appends the result to docs/BENCHMARKS.md.",
    )
    bench.add_argument("--records", type=int, default=100_000, help="ledger lines to sync (default 100000)")
    bench.add_argument("--database-url", help="database to use (default DATABASE_URL); it is migrated first")
    bench.add_argument(
        "--stub-url", help="a running coordinator stub (default: start one on a free port of 127.0.0.1)"
    )
    bench.add_argument(
        "--stub-mode",
        choices=("process", "thread"),
        default="process",
        help="run the started stub in a child process (default) or in a thread of this process",
    )
    bench.add_argument("--api-key", default="bench-coordinator-api-key", help="the stub's bearer key")
    bench.add_argument("--concurrency", type=int, default=32, help="sends in flight (default 32)")
    bench.add_argument("--batch-size", type=int, default=1000, help="lines per batch (default 1000)")
    bench.add_argument("--keep", action="store_true", help="keep the seeded lines in the database")
    bench.add_argument("--no-report", action="store_true", help="do not append to docs/BENCHMARKS.md")
    bench.set_defaults(handler=_bench_billing)
