"""The ``conveyor`` command: run workers, migrate a database, look at runs.

conveyor worker --app myapp.workflows:app --concurrency 8
conveyor start checkout --app myapp.workflows:app --input '{"id": 42}'
conveyor migrate --backend postgresql://localhost/app
conveyor status order-1001 --backend sqlite:///conveyor.db
conveyor runs list --workflow checkout --state failed --limit 20
conveyor retry order-1001 --app myapp.workflows:app --from-step charge --reason "gateway fixed"
conveyor prune --older-than 30d --backend postgresql://localhost/app
conveyor serve --app myapp.workflows:app --port 8000 --worker 4

Every command takes ``--app`` (the :class:`~conveyor.Conveyor` runtime, by import path) and ``--backend``
(a URL; the app's own backend, else ``$CONVEYOR_BACKEND``, else ``sqlite:///conveyor.db``).

Every option is checked as it is parsed (:mod:`conveyor.cli_arguments`). Whatever goes wrong is one line on
stderr: exit 2 for a bad argument or a backend that cannot be opened, 1 for an error while the command
runs, 3 when ``start --wait --timeout`` runs out before the run ends; a traceback only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

from conveyor.backends.listing import MAX_PAGE_SIZE
from conveyor.backends.retention import DEFAULT_PRUNE_BATCH, MAX_PRUNE_BATCH
from conveyor.cli_arguments import (
    OneLineParser,
    age,
    json_input,
    non_negative_seconds,
    one_line,
    positive_seconds,
    run_state,
    text,
    whole_number,
    workflow_id,
)
from conveyor.core.history import Event
from conveyor.core.records import RunSummary
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
    """The runtime a command works with: the ``--app`` one, on ``--backend`` when that is given too."""
    app_path = getattr(arguments, "app", None) or _from_environment(APP_VARIABLE)
    backend = arguments.backend or _from_environment(BACKEND_VARIABLE)
    if app_path is None:
        if getattr(arguments, "needs_app", False):
            raise ConfigurationError(
                f"conveyor {arguments.command} needs --app MODULE:ATTRIBUTE (or ${APP_VARIABLE}), the "
                "conveyor.Conveyor that registers your workflows"
            )
        return Conveyor(backend or default_backend_url())
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
    return app if arguments.backend is None else app.using(arguments.backend)


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
            worker.run(until_idle=arguments.until_idle)
    finally:
        if served is not None:
            served.close()
    return 0


def _serve(arguments: argparse.Namespace, app: Conveyor) -> int:
    from conveyor.web.serve import serve  # only now: the web extra is optional

    return serve(app, host=arguments.host, port=arguments.port, worker_slots=arguments.worker)


def _migrate(arguments: argparse.Namespace, app: Conveyor) -> int:
    migrate = getattr(app.backend, "migrate", None)
    if migrate is not None:
        migrate()
    print(f"{arguments.backend or default_backend_url()}: schema is up to date")
    return 0


def _start(arguments: argparse.Namespace, app: Conveyor) -> int:
    handle = app.start(
        arguments.name, arguments.input, workflow_id=arguments.workflow_id, version=arguments.version
    )
    if arguments.wait:
        try:
            status = handle.wait(arguments.timeout)
        except TimeoutError as exc:
            print(f"conveyor: {exc} (a worker runs it: is one running?)", file=sys.stderr)
            return 3
    else:
        status = handle.status()
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 1 if status.is_failed() else 0


def _status(arguments: argparse.Namespace, app: Conveyor) -> int:
    status = app.status(arguments.workflow_id)
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 0 if not status.is_failed() else 1


def _signal(arguments: argparse.Namespace, app: Conveyor) -> int:
    signal_id = app.send_signal(arguments.workflow_id, arguments.name, arguments.payload)
    print(f"signal {arguments.name!r} sent to run {arguments.workflow_id!r} (signal {signal_id})")
    return 0


def _steer(arguments: argparse.Namespace, app: Conveyor) -> int:
    """cancel, pause and unpause: the request is stored with the run (and logged); its status is printed."""
    by = arguments.by
    if arguments.command == "cancel":
        status = app.cancel(arguments.workflow_id, arguments.reason or "", by=by)
    elif arguments.command == "compensate":
        status = app.compensate(arguments.workflow_id, arguments.reason or "")
    elif arguments.command == "pause":
        status = app.pause(arguments.workflow_id, by=by, reason=arguments.reason or "")
    else:
        status = app.unpause(arguments.workflow_id, by=by)
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 0


def _operate(arguments: argparse.Namespace, app: Conveyor) -> int:
    """resume, retry, skip and complete: done by hand, logged with --by and --reason; the status printed."""
    workflow_id, by, reason = arguments.workflow_id, arguments.by, arguments.reason or ""
    if arguments.command == "resume":
        status = app.resume(workflow_id, by=by, reason=reason)
    elif arguments.command == "retry":
        status = app.retry(workflow_id, from_step=arguments.from_step, by=by, reason=reason)
    elif arguments.command == "skip":
        status = app.skip_step(workflow_id, arguments.step, arguments.result, by=by, reason=reason)
    else:
        status = app.complete_by_hand(workflow_id, arguments.output, by=by, reason=reason)
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 1 if status.is_failed() else 0


def _list_runs(arguments: argparse.Namespace, app: Conveyor) -> int:
    page = app.runs(arguments.workflow, state=arguments.state, limit=arguments.limit, page=arguments.page)
    if arguments.json:
        shown = {"runs": [run.to_dict() for run in page], "next_page": page.next_page}
        print(json.dumps(shown, indent=2))
        return 0
    print(runs_table(page.runs))
    if page.next_page is not None:
        print(f"more: --page {page.next_page}")
    return 0


def _run_history(arguments: argparse.Namespace, app: Conveyor) -> int:
    events = app.history(arguments.workflow_id, after_seq=arguments.after)
    if arguments.json:
        print(json.dumps([event.to_dict() for event in events], indent=2))
        return 0
    print(history_table(events))
    return 0


def history_table(events: Sequence[Event]) -> str:
    """A run's events as an aligned text table: seq, time (UTC), kind, step and attempt, worker, details."""
    header = ("SEQ", "AT (UTC)", "EVENT", "STEP", "WORKER", "DETAILS")
    rows = [header]
    for event in events:
        at = dt.datetime.fromtimestamp(event.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        step = "" if event.step is None else event.step
        if event.attempt is not None:
            step += f" #{event.attempt}"
        details = " ".join(_detail(key, value) for key, value in event.data.items())
        rows.append((str(event.seq), at, event.kind, step, event.worker or "", details))
    if len(rows) == 1:
        return "no events (the run was recorded with history off)"
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        cells = [*row[:-1], one_line(row[-1])[:160]]
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _detail(key: str, value: Any) -> str:
    """One item of an event's data, for people: durations in ms, times in UTC."""
    if key == "duration_seconds" and isinstance(value, int | float):
        return f"took={value * 1000:.1f}ms"
    if key.endswith("_at") and isinstance(value, int | float):
        return f"{key}={dt.datetime.fromtimestamp(value, dt.UTC).strftime('%H:%M:%S.%f')[:-3]}"
    return f"{key}={value}"


def _prune(arguments: argparse.Namespace, app: Conveyor) -> int:
    """Delete the runs that finished more than --older-than ago, a batch at a time; say how many."""
    before = app.clock.now() - arguments.older_than
    shown = dt.datetime.fromtimestamp(before, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    live = not arguments.json and sys.stderr.isatty()

    def progress(pruned: int) -> None:
        line = f"\rpruning runs finished before {shown}: {pruned:,} deleted"
        print(line, end="", file=sys.stderr, flush=True)

    pruned = app.prune(
        older_than=arguments.older_than,
        batch_size=arguments.batch_size,
        on_progress=progress if live else None,
    )
    if live and pruned:
        print(file=sys.stderr)
    if arguments.json:
        finished_before = dt.datetime.fromtimestamp(before, dt.UTC).isoformat()
        print(json.dumps({"pruned": pruned, "finished_before": finished_before}))
    else:
        print(f"pruned {pruned:,} {'run' if pruned == 1 else 'runs'} that finished before {shown}")
    return 0


def runs_table(runs: Sequence[RunSummary]) -> str:
    """Runs as an aligned text table: id, workflow, state, when recorded (UTC) and what went wrong."""
    header = ("WORKFLOW ID", "WORKFLOW", "STATE", "CREATED (UTC)", "ERROR")
    rows = [header]
    for run in runs:
        created = dt.datetime.fromtimestamp(run.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        state = run.state.value if run.state is not None else "unreadable"
        wrong = run.problem or run.error_message or ""
        rows.append((run.workflow_id, f"{run.workflow_name}@{run.workflow_version}", state, created, wrong))
    if len(rows) == 1:
        return "no runs"
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        cells = [*row[:-1], one_line(row[-1])[:120]]
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command-line parser (also used to render the CLI's documentation)."""
    top = OneLineParser(prog="conveyor", description="Durable workflows and sagas.")
    top.add_argument("--verbose", "-v", action="store_true", help="log what workers do")
    top.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON (text)"
    )
    commands = top.add_subparsers(dest="command", required=True)

    def command(
        name: str, help: str, *, needs_app: bool = False, group: Any = commands
    ) -> argparse.ArgumentParser:
        added: argparse.ArgumentParser = group.add_parser(name, help=help)
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
        added.set_defaults(needs_app=needs_app)
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

    start = command("start", "start a workflow by name", needs_app=True)
    start.add_argument("name", type=text, help="the workflow's name")
    start.add_argument("--input", type=json_input, default="null", help="the input, as JSON (default: null)")
    start.add_argument("--workflow-id", type=workflow_id, help="the run's id (default: a new one)")
    start.add_argument("--version", type=text, help="the workflow's version (default: the newest)")
    start.add_argument("--wait", action="store_true", help="wait for the run to end (a worker runs it)")
    start.add_argument(
        "--timeout", type=positive_seconds, default=None, help="with --wait, give up after this many seconds"
    )
    start.set_defaults(run=_start)

    migrate = command("migrate", "create or update the database schema")
    migrate.set_defaults(run=_migrate)

    status = command("status", "print a run's status as JSON")
    status.add_argument("workflow_id", type=workflow_id)
    status.set_defaults(run=_status)

    signal = command("signal", "send a signal to a run (kept until a wait_for_signal step takes it)")
    signal.add_argument("workflow_id", type=workflow_id)
    signal.add_argument("name", type=text, help="the signal's name")
    signal.add_argument("--payload", type=json_input, default="null", help="its payload, as JSON (null)")
    signal.set_defaults(run=_signal)

    def operator_command(name: str, help: str, *, needs_app: bool, run: Any) -> argparse.ArgumentParser:
        added = command(name, help, needs_app=needs_app)
        added.add_argument("workflow_id", type=workflow_id)
        added.add_argument("--by", type=text, default=None, help="who does this (default: the OS user)")
        added.add_argument("--reason", type=text, default=None, help="why (stored with the run)")
        added.set_defaults(run=run)
        return added

    operator_command(
        "cancel",
        "cancel a run: its completed steps are undone, it ends cancelled",
        needs_app=False,
        run=_steer,
    )
    operator_command(
        "pause", "pause a run: no new step starts until it is unpaused", needs_app=False, run=_steer
    )
    operator_command("unpause", "lift a run's pause: a worker goes on with it", needs_app=False, run=_steer)
    operator_command(
        "resume",
        "drive here, to its end, a run whose process died (or a paused one)",
        needs_app=True,
        run=_operate,
    )
    retry = operator_command(
        "retry", "run a failed run again here, from where it failed", needs_app=True, run=_operate
    )
    retry.add_argument(
        "--from-step",
        type=text,
        default=None,
        help="run this step and every step after it that depends on it again",
    )
    skip = operator_command(
        "skip",
        "complete a failed step with a given result and drive the run on here",
        needs_app=True,
        run=_operate,
    )
    skip.add_argument("step", type=text, help="the failed step")
    skip.add_argument("--result", type=json_input, default="null", help="its result, as JSON (default: null)")
    complete = operator_command("complete", "mark a run completed by hand", needs_app=False, run=_operate)
    complete.add_argument("--output", type=json_input, default="null", help="its output, as JSON (null)")
    operator_command(
        "compensate",
        "undo a run, even a completed one: its completed steps' undos run, it ends cancelled",
        needs_app=False,
        run=_steer,
    )

    prune = command("prune", "delete finished runs (with their steps, signals and history) older than an age")
    prune.add_argument(
        "--older-than",
        type=age,
        required=True,
        metavar="AGE",
        help="how long ago a run must have finished: 30d, 12h, 90m, 1h30m (runs not finished are kept)",
    )
    prune.add_argument(
        "--batch-size",
        type=whole_number(1, MAX_PRUNE_BATCH),
        default=DEFAULT_PRUNE_BATCH,
        help=f"runs deleted per transaction (default {DEFAULT_PRUNE_BATCH})",
    )
    prune.add_argument("--json", action="store_true", help="print how many as JSON")
    prune.set_defaults(run=_prune)

    runs = commands.add_parser("runs", help="look at the runs a backend holds").add_subparsers(
        dest="runs_command", required=True
    )
    listing = command("list", "list runs, newest first, a page at a time", group=runs)
    listing.add_argument("--workflow", type=text, help="only this workflow's runs (its name)")
    listing.add_argument(
        "--state", type=run_state, action="append", help="only runs in this state (repeatable)"
    )
    listing.add_argument(
        "--limit", type=whole_number(1, MAX_PAGE_SIZE), default=20, help="runs per page (default 20)"
    )
    listing.add_argument("--page", type=text, help="the page token printed after the page before")
    listing.add_argument("--json", action="store_true", help="print the page as JSON")
    listing.set_defaults(run=_list_runs)
    history = command("history", "a run's event history, oldest first", group=runs)
    history.add_argument("workflow_id", type=text, help="the run's workflow id")
    history.add_argument(
        "--after", type=whole_number(0, 2**31), default=0, help="only events after this seq (0)"
    )
    history.add_argument("--json", action="store_true", help="print the events as JSON")
    history.set_defaults(run=_run_history)
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
