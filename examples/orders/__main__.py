"""The order application's command line.

python -m examples.orders demo [--db URL] [--orders 300]   the chaos demo (a fresh SQLite file by default)
python -m examples.orders check --db URL                   the invariant check on any database
python -m examples.orders serve --db URL [--port 8000]     the HTTP API (run workers beside it; it needs
                                                           $ORDERS_API_TOKENS and/or $ORDERS_ADMIN_TOKEN)
python -m examples.orders relay --db URL                   the outbox relay (sends the queued emails)
python -m examples.orders setup --db URL                   create the tables and stock the demo catalogue
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    top = argparse.ArgumentParser(prog="python -m examples.orders", description="The conveyor order shop.")
    commands = top.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="orders with faults through two workers, one killed midway")
    demo.add_argument("--db", help="database URL (default: a fresh SQLite file in a temporary folder)")
    demo.add_argument("--orders", type=int, default=300, help="how many orders (default 300)")
    check = commands.add_parser("check", help="check the invariants on a database")
    check.add_argument("--db", required=True, help="sqlite:///path.db or postgresql://...")
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--db", required=True, help="sqlite:///path.db or postgresql://...")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    relay = commands.add_parser("relay", help="send the emails queued in the outbox, until interrupted")
    relay.add_argument("--db", required=True, help="sqlite:///path.db or postgresql://...")
    setup = commands.add_parser("setup", help="create the tables and stock the demo catalogue")
    setup.add_argument("--db", required=True, help="sqlite:///path.db or postgresql://...")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status."""
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if arguments.command == "demo":
        from examples.orders.demo import run_demo

        return run_demo(arguments.db, arguments.orders)
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

        from examples.orders.api import create_app
        from examples.orders.workflows import shop_runtime

        with shop_runtime(arguments.db, system=system) as shop:
            app = create_app(shop, access)
            uvicorn.run(app, host=arguments.host, port=arguments.port)
        return 0
    finally:
        system.close()


if __name__ == "__main__":
    sys.exit(main())
