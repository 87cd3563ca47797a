"""The ``conveyor`` command: run workers, migrate a database, look at runs.

conveyor worker --backend postgresql://localhost/app --import myapp.workflows --concurrency 8
conveyor migrate --backend postgresql://localhost/app
conveyor status order-1001 --backend sqlite:///conveyor.db
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from conveyor.backends.base import Backend
from conveyor.backends.urls import open_backend
from conveyor.definition.registry import UnknownWorkflowError, default_registry, version_key
from conveyor.definition.templates import load_template, load_templates
from conveyor.definition.workflow import Workflow
from conveyor.engine.handles import start_workflow
from conveyor.engine.reading import get_workflow_status
from conveyor.engine.worker import Worker
from conveyor.errors import ConveyorError, InvalidArgumentError

DEFAULT_BACKEND = os.environ.get("CONVEYOR_BACKEND", "sqlite:///conveyor.db")


def workflows_in(modules: Iterable[ModuleType]) -> list[Workflow]:
    """Every workflow the modules define at top level (flows, workflow classes), and every registered one."""
    found: dict[tuple[str, str], Workflow] = {}
    for module in modules:
        for value in vars(module).values():
            workflow = value if isinstance(value, Workflow) else getattr(value, "workflow", None)
            if isinstance(workflow, Workflow):
                found[(workflow.name, workflow.version)] = workflow
    for workflow in default_registry.workflows():  # workflow classes and YAML templates register there
        found.setdefault((workflow.name, workflow.version), workflow)
    return list(found.values())


def _load(arguments: argparse.Namespace) -> list[Workflow]:
    modules = _import(arguments.imports or [])
    for path in arguments.templates or []:
        (load_templates if Path(path).is_dir() else load_template)(Path(path))
    return workflows_in(modules)


def _choose(workflows: Sequence[Workflow], name: str, version: str | None) -> Workflow:
    matching = [w for w in workflows if w.name == name and (version is None or w.version == version)]
    if not matching:
        known = ", ".join(sorted(f"{w.name} v{w.version}" for w in workflows)) or "none"
        raise UnknownWorkflowError(
            f"no workflow {name!r}{'' if version is None else f' v{version}'} was found; known: {known}"
        )
    return max(matching, key=lambda workflow: version_key(workflow.version))


def _import(names: Sequence[str]) -> list[ModuleType]:
    sys.path.insert(0, os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise SystemExit(f"conveyor: cannot import {name!r}: {exc}") from exc
    return modules


def _worker(arguments: argparse.Namespace, backend: Backend) -> int:
    workflows = _load(arguments)
    if not workflows:
        raise SystemExit(f"conveyor: no workflows found in {', '.join(arguments.imports or [])}")
    worker = Worker(
        backend,
        workflows,
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


def _migrate(arguments: argparse.Namespace, backend: Backend) -> int:
    migrate = getattr(backend, "migrate", None)
    if migrate is not None:
        migrate()
    print(f"{arguments.backend}: schema is up to date")
    return 0


def _start(arguments: argparse.Namespace, backend: Backend) -> int:
    workflow = _choose(_load(arguments), arguments.name, arguments.version)
    try:
        initial_input = json.loads(arguments.input)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--input is not JSON: {exc}", argument="input") from exc
    workflow_id = arguments.workflow_id or f"{workflow.name}-{uuid.uuid4().hex[:12]}"
    handle = start_workflow(workflow, workflow_id, initial_input, backend)
    status = handle.wait(arguments.timeout) if arguments.wait else handle.status()
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 1 if status.is_failed() else 0


def _status(arguments: argparse.Namespace, backend: Backend) -> int:
    status = get_workflow_status(arguments.workflow_id, backend)
    print(json.dumps(status.to_dict(), indent=2, default=str))
    return 0 if not status.is_failed() else 1


def parser() -> argparse.ArgumentParser:
    """The command-line parser (also used to render the CLI's documentation)."""
    top = argparse.ArgumentParser(prog="conveyor", description="Durable workflows and sagas.")
    top.add_argument("--verbose", "-v", action="store_true", help="log what workers do")
    commands = top.add_subparsers(dest="command", required=True)

    def with_backend(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument(
            "--backend",
            default=DEFAULT_BACKEND,
            help="sqlite:///path.db, postgresql://user@host/db or memory:// "
            "(default: $CONVEYOR_BACKEND or sqlite:///conveyor.db)",
        )
        return command

    def with_workflows(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument(
            "--import", dest="imports", action="append", metavar="MODULE",
            help="a module defining workflows (repeat for several)",
        )  # fmt: skip
        command.add_argument(
            "--templates", action="append", metavar="PATH",
            help="a YAML workflow template, or a folder of them (repeat for several)",
        )  # fmt: skip
        return command

    worker = with_workflows(with_backend(commands.add_parser("worker", help="claim and run workflows")))
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

    start = with_workflows(with_backend(commands.add_parser("start", help="start a workflow by name")))
    start.add_argument("name", help="the workflow's name")
    start.add_argument("--input", default="null", help="the input, as JSON (default: null)")
    start.add_argument("--workflow-id", help="the run's id (default: a new one)")
    start.add_argument("--version", help="the workflow's version (default: the newest)")
    start.add_argument("--wait", action="store_true", help="wait for the run to end (a worker runs it)")
    start.add_argument("--timeout", type=float, default=None, help="with --wait, give up after this long")
    start.set_defaults(run=_start)

    migrate = with_backend(commands.add_parser("migrate", help="create or update the database schema"))
    migrate.set_defaults(run=_migrate)

    status = with_backend(commands.add_parser("status", help="print a run's status as JSON"))
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
        backend = open_backend(arguments.backend)
    except ConveyorError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return 2
    try:
        result: Any = arguments.run(arguments, backend)
        return int(result)
    except ConveyorError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return 1
    finally:
        backend.close()


if __name__ == "__main__":
    sys.exit(main())
