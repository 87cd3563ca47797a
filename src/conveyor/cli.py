"""The ``conveyor`` command: run workers, migrate a database, start, look at and steer runs.

conveyor worker --app myapp.workflows:app --concurrency 8
conveyor start checkout --app myapp.workflows:app --input '{"id": 42}' --wait
conveyor migrate --backend postgresql://localhost/app
conveyor runs list --workflow checkout --state failed --limit 20
conveyor runs show order-1001 --backend sqlite:///conveyor.db
conveyor runs history order-1001 --json
conveyor retry order-1001 --app myapp.workflows:app --from-step charge --reason "gateway fixed"
conveyor stats --since 24h
conveyor prune --older-than 30d --backend postgresql://localhost/app
conveyor serve --app myapp.workflows:app --port 8000 --worker 4

Every command takes ``--app`` (the :class:`~conveyor.Conveyor` runtime, by import path), ``--backend``
(a URL; the app's own backend, else ``$CONVEYOR_BACKEND``, else ``sqlite:///conveyor.db``) and ``--json``
(one JSON document on stdout, nothing else there; see :mod:`conveyor.cli_output`). The commands that only
read (``runs list``, ``runs show``, ``status``, ``runs history``, ``stats``) open the backend read-only: they
never create a database or migrate one. The commands are in :mod:`conveyor.cli_commands`, by job.

Every option is checked as it is parsed (:mod:`conveyor.cli_arguments`). Whatever goes wrong is one line on
stderr: exit 2 for a bad argument or a backend that cannot be opened, 1 for an error while the command
runs (and for a run shown or driven that failed), 3 when ``start --wait --timeout`` runs out before the run
ends; a traceback only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

from conveyor.cli_arguments import (
    OneLineParser,
    non_negative_seconds,
    one_line,
    positive_seconds,
    text,
    whole_number,
)
from conveyor.cli_commands import reading, steering, upkeep
from conveyor.cli_output import Output
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.runtime.app import BACKEND_VARIABLE, Conveyor, default_backend_url
from conveyor.runtime.event_logs import configure_logging

METRICS_TOKEN_VARIABLE = "CONVEYOR_METRICS_TOKEN"

APP_VARIABLE = "CONVEYOR_APP"
MAX_WORKERS_PER_PROCESS = 1_000
"""The most runs one worker process drives at once (``--concurrency``): each is a thread."""


def _from_environment(variable: str) -> str | None:
    """``$variable``, checked like the option it stands for (None when unset or blank)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    try:
        return text(value)
    except argparse.ArgumentTypeError as exc:
        raise ConfigurationError(f"${variable} {exc}") from None


def _runtime(arguments: argparse.Namespace) -> Conveyor:
    """The runtime a command works with: the ``--app`` one, on ``--backend`` when that is given too; for
    a command that only reads, on its backend URL opened read-only."""
    app_path = getattr(arguments, "app", None) or _from_environment(APP_VARIABLE)
    backend = arguments.backend or _from_environment(BACKEND_VARIABLE)
    read_only = bool(getattr(arguments, "reads", False))
    if app_path is None:
        if getattr(arguments, "needs_app", False):
            raise ConfigurationError(
                f"conveyor {arguments.command} needs --app MODULE:ATTRIBUTE (or ${APP_VARIABLE}), the "
                "conveyor.Conveyor that registers your workflows"
            )
        return Conveyor(backend or default_backend_url(), read_only=read_only)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = Conveyor.from_path(app_path)
    except ConveyorError:
        raise
    except Exception as exc:  # the user's module failed as it was imported: name it and its error
        raise ConfigurationError(
            f"importing --app {app_path!r} failed: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    if arguments.backend is not None:
        return app.using(arguments.backend, read_only=read_only)
    if read_only and app.backend_url is not None:  # (a backend object the app was given is used as it is)
        return app.using(app.backend_url, read_only=True)
    return app


def _worker(arguments: argparse.Namespace, app: Conveyor) -> int:
    if arguments.log_events:
        app.log_events()
    served = None
    if arguments.metrics_port is not None:
        token = arguments.metrics_token or _from_environment(METRICS_TOKEN_VARIABLE)
        if not token:
            raise ConfigurationError(
                f"--metrics-port needs a token: --metrics-token, or ${METRICS_TOKEN_VARIABLE} (every network "
                "door needs one; Prometheus sends it as a bearer token)"
            )
        served = app.metrics.serve(arguments.metrics_port, token=token, host=arguments.metrics_host)
        logging.getLogger("conveyor.worker").warning("metrics at %s", served.url)
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
    try:
        with app.consuming():  # the app's durable subscribers and webhooks, beside the runs (if it has any)
            stats = worker.run(until_idle=arguments.until_idle)
    finally:
        if served is not None:
            served.close()
    done = {"worker": worker.name, **dataclasses.asdict(stats)}
    out = Output(json=arguments.json)
    if out.json:
        out.data(done)
    else:
        counts = ", ".join(
            f"{key.replace('_', ' ')} {value}" for key, value in done.items() if key != "worker"
        )
        out.show(f"worker {worker.name} stopped: {counts}")
    return 0


def _serve(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor serve``: with ``--json``, where it serves is printed first as one JSON document."""
    from conveyor.web.serve import serve  # only now: the web extra is optional
    from conveyor.web.tokens import ApiTokens

    tokens = ApiTokens.from_environment()  # none: one line naming the variables, before anything is printed
    if arguments.json:
        base = f"http://{arguments.host}:{arguments.port}"
        Output(json=True).data({"dashboard": f"{base}/", "api": f"{base}/api", "health": f"{base}/healthz"})
    return serve(app, host=arguments.host, port=arguments.port, worker_slots=arguments.worker, tokens=tokens)


def parser() -> argparse.ArgumentParser:
    """The command-line parser (also used to render the CLI's documentation)."""
    top = OneLineParser(prog="conveyor", description="Durable workflows and sagas.")
    top.add_argument("--verbose", "-v", action="store_true", help="log what workers do")
    top.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON (text)"
    )
    commands = top.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        help: str,
        *,
        needs_app: bool = False,
        group: Any = None,
        reads: bool = False,
        aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        """Add a command with the options every command takes (``reads``: open its backend read-only)."""
        chosen = commands if group is None else group
        added: argparse.ArgumentParser = chosen.add_parser(name, help=help, aliases=list(aliases))
        added.add_argument(
            "--app",
            type=text,
            metavar="MODULE:ATTRIBUTE",
            help=f"the conveyor.Conveyor runtime to use, e.g. myapp.workflows:app (default: ${APP_VARIABLE})",
        )
        added.add_argument(
            "--backend",
            type=text,
            default=None,
            help="sqlite:///path.db, postgresql://user@host/db or memory:// (default: the app's backend, "
            f"else ${BACKEND_VARIABLE}, else sqlite:///conveyor.db)",
        )
        added.add_argument(
            "--json",
            action="store_true",
            help="print the result as one JSON document on stdout (see docs/cli.md)",
        )
        added.set_defaults(needs_app=needs_app, reads=reads)
        return added

    worker = command(
        "worker", "claim and run workflows; deliver to the app's durable subscribers", needs_app=True
    )
    concurrency = whole_number(1, MAX_WORKERS_PER_PROCESS)
    worker.add_argument("--concurrency", type=concurrency, default=4, help="runs driven at once (default 4)")
    worker.add_argument(
        "--lease-seconds", type=positive_seconds, default=30.0, help="how long a claim lasts (30)"
    )
    worker.add_argument(
        "--poll-interval-seconds", type=positive_seconds, default=5.0, help="fallback poll (5)"
    )
    worker.add_argument(
        "--max-recoveries", type=whole_number(0, 1_000_000), default=5, help="dead-letter after this many (5)"
    )
    worker.add_argument(
        "--grace-seconds", type=non_negative_seconds, default=30.0, help="on SIGTERM, time to finish (30)"
    )
    worker.add_argument("--until-idle", action="store_true", help="exit once no work is left")
    worker.add_argument(
        "--name",
        type=text,
        help="a stable name for this worker (e.g. its host and slot): restarted under it, the worker "
        "takes back at once the runs it held when it died (default: unique per process)",
    )
    worker.add_argument(
        "--metrics-port", type=whole_number(0, 65535), help="serve Prometheus metrics on this port (off)"
    )
    worker.add_argument(
        "--metrics-host", type=text, default="127.0.0.1", help="the metrics' address (127.0.0.1)"
    )
    worker.add_argument(
        "--metrics-token",
        type=text,
        help=f"the bearer token scrapes must send (default: ${METRICS_TOKEN_VARIABLE})",
    )
    worker.add_argument("--log-events", action="store_true", help="log one line per event")
    worker.set_defaults(run=_worker)

    serve = command(
        "serve", "serve the REST API and the dashboard (needs $CONVEYOR_ADMIN_TOKENS)", needs_app=True
    )
    serve.add_argument("--host", type=text, default="127.0.0.1", help="the address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=whole_number(1, 65535), default=8000, help="the port (8000)")
    serve.add_argument(
        "--worker",
        type=whole_number(0, MAX_WORKERS_PER_PROCESS),
        default=0,
        metavar="N",
        help="also run a worker with N slots in this process, to drive started and retried runs (0: off)",
    )
    serve.set_defaults(run=_serve)

    steering.add_start(command("start", "start a workflow by name", needs_app=True))

    migrate = command("migrate", "create or update the database schema")
    migrate.set_defaults(run=upkeep.migrate)

    steering.add_commands(command)
    upkeep.add_commands(command)
    runs = commands.add_parser("runs", help="look at the runs a backend holds").add_subparsers(
        dest="runs_command", required=True
    )
    reading.add_commands(command, runs)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``conveyor`` command."""
    arguments = parser().parse_args(argv)
    configure_logging(json=arguments.log_format == "json", verbose=arguments.verbose)
    try:
        app = _runtime(arguments)
        app.backend  # noqa: B018 (opens it: a bad URL is a usage error, before anything runs)
    except ConveyorError as exc:
        print(f"conveyor: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        result: Any = arguments.run(arguments, app)
        return int(result)
    except ConveyorError as exc:
        print(f"conveyor: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conveyor: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, in conveyor or a step: one line, the traceback with --verbose
        if arguments.verbose:
            traceback.print_exc()
        print(
            f"conveyor: unexpected {type(exc).__name__}: {one_line(exc)} (-v prints the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
