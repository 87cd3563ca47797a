"""The order application's command line.

python -m examples.orders demo [--db URL] [--orders 300]   the chaos demo (a fresh SQLite file by default;
                           [--serve [--port 8000]]         --serve: then the dashboard over it, until Ctrl-C)
python -m examples.orders check --db URL                   the invariant check on any database
python -m examples.orders serve --db URL [--port 8000]     the HTTP API (run workers beside it; it needs
                                                           $ORDERS_API_TOKENS and/or $ORDERS_ADMIN_TOKEN)
python -m examples.orders relay --db URL                   the outbox relay (sends the queued emails)
python -m examples.orders setup --db URL                   create the tables and stock the demo catalogue
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from conveyor.cli_arguments import OneLineParser, whole_number


def _database_url(text: str) -> str:
    if not text.isprintable() or not text.strip():
        raise argparse.ArgumentTypeError(f"must be printable text, not {text!r}")
    if urlsplit(text).scheme not in ("sqlite", "postgresql", "postgres"):
        raise argparse.ArgumentTypeError(f"must be sqlite:///path.db or postgresql://..., not {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    top = OneLineParser(prog="python -m examples.orders", description="The conveyor order shop.")
    commands = top.add_subparsers(dest="command", required=True)
    url_help = "sqlite:///path.db or postgresql://..."
    demo = commands.add_parser("demo", help="orders with faults through two workers, one killed midway")
    demo.add_argument("--db", type=_database_url, help="database URL (default: a fresh SQLite file)")
    demo.add_argument(
        "--orders", type=whole_number(1, 100_000), default=300, help="how many orders (default 300)"
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="then serve conveyor's dashboard over the demo's runs until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=whole_number(1, 65_535), default=8000, help="the dashboard's port (8000)"
    )
    check = commands.add_parser("check", help="check the invariants on a database")
    check.add_argument("--db", required=True, type=_database_url, help=url_help)
    serve = commands.add_parser(
        "serve", help="serve the HTTP API (needs $ORDERS_API_TOKENS or $ORDERS_ADMIN_TOKEN)"
    )
    serve.add_argument("--db", required=True, type=_database_url, help=url_help)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=whole_number(1, 65_535), default=8000)
    relay = commands.add_parser("relay", help="send the emails queued in the outbox, until interrupted")
    relay.add_argument("--db", required=True, type=_database_url, help=url_help)
    setup = commands.add_parser("setup", help="create the tables and stock the demo catalogue")
    setup.add_argument("--db", required=True, type=_database_url, help=url_help)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (whatever fails is one line on stderr)."""
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(arguments)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, naming the database: the traceback helps nobody running the shop
        where = f" (on {arguments.db})" if getattr(arguments, "db", None) else ""
        message = " ".join(str(exc).split())
        print(
            f"python -m examples.orders {arguments.command}: {type(exc).__name__}: {message}{where}",
            file=sys.stderr,
        )
        return 1


def _run(arguments: argparse.Namespace) -> int:
    if arguments.command == "demo":
        from examples.orders.demo import run_demo

        return run_demo(arguments.db, arguments.orders, serve=arguments.serve, port=arguments.port)
    if arguments.command == "check":
        from examples.orders.check import run_check

        return run_check(arguments.db)
    from examples.orders import services
    from examples.orders.system import OrderSystem

    if arguments.command == "serve":
        from examples.orders.access import AccessConfigurationError, ApiAccess

        try:  # before anything opens: a door with no lock never starts
            access = ApiAccess.from_environment()
            access.require_tokens()
        except AccessConfigurationError as exc:
            print(f"python -m examples.orders serve: {exc}", file=sys.stderr)
            return 2
    system = OrderSystem.open(arguments.db, create_schema=True)
    try:
        if arguments.command == "setup":
            from examples.orders.chaos import CATALOGUE

            services.add_products(system, CATALOGUE)
            print(f"{arguments.db}: tables created, {len(CATALOGUE)} products stocked")
            return 0
        if arguments.command == "relay":
            from examples.orders.relay import OutboxRelay

            relay = OutboxRelay(system)
            for stop_signal in (signal.SIGINT, signal.SIGTERM):
                signal.signal(stop_signal, lambda signum, frame: relay.stop())
            stats = relay.run()
            print(f"relay stopped: {stats.sent} emails sent, {stats.failed_attempts} failed attempts")
            return 0
        import uvicorn

        from conveyor.web.tokens import ApiTokens
        from examples.orders.access import ADMIN_VARIABLE
        from examples.orders.api import create_app
        from examples.orders.workflows import shop_runtime

        admin = os.environ.get(ADMIN_VARIABLE, "").strip()
        operations = ApiTokens(admin=[admin]) if admin else None  # conveyor's dashboard at /conveyor
        with shop_runtime(arguments.db, system=system) as shop:
            app = create_app(shop, access, operations=operations)
            uvicorn.run(app, host=arguments.host, port=arguments.port)
        return 0
    finally:
        system.close()


if __name__ == "__main__":
    sys.exit(main())
