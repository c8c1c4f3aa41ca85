"""The `poolhub` command: serve, migrate, and the operating tools later issues add."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from poolhub.app.settings import Settings, SettingsError, load_settings


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(f"poolhub: invalid configuration: {exc}")


def _serve(args: argparse.Namespace) -> None:

    from poolhub.app.logging import configure_logging

    settings = _settings_or_exit()
    missing = settings.missing_secrets()
    if missing:
        sys.exit(
            f"poolhub: refusing to start: empty secret(s) {', '.join(missing)} "
            "(set them in the environment or .env)"
        )
    problems = settings.production_problems()
    if problems:
        sys.exit(
            f"poolhub: refusing to start in production (POOLHUB_ENV=production): {'; '.join(problems)} "
            "(generate secrets with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
            "or set POOLHUB_ENV=development on a laptop)"
        )
    configure_logging(settings.log_level)
    with contextlib.ExitStack() as stack:
        if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Set before the workers start: prometheus-client picks its value store when it is imported.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="poolhub-metrics-")
            )
        _run_server(args, settings)


def _run_server(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    uvicorn.run(
        "poolhub.app.asgi:create_app_from_env",
        factory=True,
        host=args.host or settings.bind,
        port=args.port or settings.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=10,
        # The app itself reads X-Forwarded-For from FORWARDED_ALLOW_IPS (rate limits key on the client).
        proxy_headers=False,
    )


def _migrate(_: argparse.Namespace) -> None:
    from poolhub.adapters.db.engine import redacted_url
    from poolhub.adapters.db.migrate import upgrade

    settings = _settings_or_exit()
    upgrade(settings.database_url)
    print(f"poolhub: database at {redacted_url(settings.database_url)} is up to date")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poolhub",
        description="Pool Hub: the real-time directory of GPU miners and a low-latency matchmaker. "
        "Configuration comes from the environment and ./.env (see .env.example).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the HTTP and WebSocket API")
    serve.add_argument("--host", help="address to bind (default POOLHUB_BIND, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default POOLHUB_PORT, 8210)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.set_defaults(handler=_migrate)

    for register in EXTRA_COMMANDS:
        register(commands)
    return parser


def _register_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from poolhub.app.tools.bench import register

    register(commands)


def _register_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from poolhub.app.tools.simulate import register

    register(commands)


def _register_sla_tools(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from poolhub.app.tools.seed_capacity import register_seed_capacity

    register_seed_capacity(commands)


def _register_billing(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from poolhub.app.tools.coordinator_stub import register

    register(commands)


def _register_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from poolhub.app.tools.demo import register

    register(commands)


def _register_console_shots(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from poolhub.app.tools.console_shots import register

    register(commands)


# Later subcommands register themselves here; each imports its module only when the CLI builds.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _register_bench,
    _register_simulate,
    _register_sla_tools,
    _register_billing,
    _register_demo,
    _register_console_shots,
]


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
