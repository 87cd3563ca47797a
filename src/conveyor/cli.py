"""The ``conveyor`` command: run workers, migrate a database, look at runs.

conveyor worker --app myapp.workflows:app --concurrency 8
conveyor start checkout --app myapp.workflows:app --input '{"id": 42}'
conveyor migrate --backend postgresql://localhost/app
conveyor status order-1001 --backend sqlite:///conveyor.db

Every command takes ``--app`` (the :class:`~conveyor.Conveyor` runtime, by import path) and ``--backend``
(a URL; the app's own backend, else ``$CONVEYOR_BACKEND``, else ``sqlite:///conveyor.db``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from conveyor.errors import ConfigurationError, ConveyorError, InvalidArgumentError
from conveyor.runtime.app import BACKEND_VARIABLE, Conveyor, default_backend_url

APP_VARIABLE = "CONVEYOR_APP"


def _runtime(arguments: argparse.Namespace) -> Conveyor:
    """The runtime a command works with: the ``--app`` one, on ``--backend`` when that is given too."""
    app_path = getattr(arguments, "app", None) or os.environ.get(APP_VARIABLE, "").strip() or None
    if app_path is None:
        if getattr(arguments, "needs_app", False):
            raise ConfigurationError(
                f"conveyor {arguments.command} needs --app MODULE:ATTRIBUTE (or ${APP_VARIABLE}), the "
                "conveyor.Conveyor that registers your workflows"
            )
        return Conveyor(arguments.backend or default_backend_url())
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app = Conveyor.from_path(app_path)
    return app if arguments.backend is None else app.using(arguments.backend)


def _worker(arguments: argparse.Namespace, app: Conveyor) -> int:
    worker = app.worker(
        concurrency=arguments.concurrency,
        lease_seconds=arguments.lease_seconds,
        poll_interval_seconds=arguments.poll_interval_seconds,
        max_recoveries=arguments.max_recoveries,
        shutdown_grace_seconds=arguments.grace_seconds,
        name=arguments.name,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("conveyor.worker").info("received %s: stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run(until_idle=arguments.until_idle)
    return 0


def _migrate(arguments: argparse.Namespace, app: Conveyor) -> int:
    migrate = getattr(app.backend, "migrate", None)
    if migrate is not None:
        migrate()
    print(f"{arguments.backend or default_backend_url()}: schema is up to date")
    return 0


def _start(arguments: argparse.Namespace, app: Conveyor) -> int:
    try:
        initial_input = json.loads(arguments.input)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--input is not JSON: {exc}", argument="input") from exc
    handle = app.start(
        arguments.name, initial_input, workflow_id=arguments.workflow_id, version=arguments.version
    )
    status = handle.wait(arguments.timeout) if arguments.wait else handle.status()
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 1 if status.is_failed() else 0


def _status(arguments: argparse.Namespace, app: Conveyor) -> int:
    status = app.status(arguments.workflow_id)
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 0 if not status.is_failed() else 1


def parser() -> argparse.ArgumentParser:
    """The command-line parser (also used to render the CLI's documentation)."""
    top = argparse.ArgumentParser(prog="conveyor", description="Durable workflows and sagas.")
    top.add_argument("--verbose", "-v", action="store_true", help="log what workers do")
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, *, needs_app: bool = False) -> argparse.ArgumentParser:
        added = commands.add_parser(name, help=help)
        added.add_argument(
            "--app",
            metavar="MODULE:ATTRIBUTE",
            help=f"the conveyor.Conveyor runtime to use, e.g. myapp.workflows:app (default: ${APP_VARIABLE})",
        )
        added.add_argument(
            "--backend",
            default=None,
            help="sqlite:///path.db, postgresql://user@host/db or memory:// (default: the app's backend, "
            f"else ${BACKEND_VARIABLE}, else sqlite:///conveyor.db)",
        )
        added.set_defaults(needs_app=needs_app)
        return added

    worker = command("worker", "claim and run workflows", needs_app=True)
    worker.add_argument("--concurrency", type=int, default=4, help="runs driven at once (default 4)")
    worker.add_argument("--lease-seconds", type=float, default=30.0, help="how long a claim lasts (30)")
    worker.add_argument("--poll-interval-seconds", type=float, default=5.0, help="fallback poll (5)")
    worker.add_argument("--max-recoveries", type=int, default=5, help="dead-letter after this many (5)")
    worker.add_argument("--grace-seconds", type=float, default=30.0, help="on SIGTERM, time to finish (30)")
    worker.add_argument("--until-idle", action="store_true", help="exit once no work is left")
    worker.add_argument(
        "--name",
        help="a stable name for this worker (e.g. its host and slot): restarted under it, the worker "
        "takes back at once the runs it held when it died (default: unique per process)",
    )
    worker.set_defaults(run=_worker)

    start = command("start", "start a workflow by name", needs_app=True)
    start.add_argument("name", help="the workflow's name")
    start.add_argument("--input", default="null", help="the input, as JSON (default: null)")
    start.add_argument("--workflow-id", help="the run's id (default: a new one)")
    start.add_argument("--version", help="the workflow's version (default: the newest)")
    start.add_argument("--wait", action="store_true", help="wait for the run to end (a worker runs it)")
    start.add_argument("--timeout", type=float, default=None, help="with --wait, give up after this long")
    start.set_defaults(run=_start)

    migrate = command("migrate", "create or update the database schema")
    migrate.set_defaults(run=_migrate)

    status = command("status", "print a run's status as JSON")
    status.add_argument("workflow_id")
    status.set_defaults(run=_status)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``conveyor`` command."""
    arguments = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        app = _runtime(arguments)
        app.backend  # noqa: B018 (opens it: a bad URL is a usage error, before anything runs)
    except ConveyorError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return 2
    try:
        result: Any = arguments.run(arguments, app)
        return int(result)
    except ConveyorError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
