"""The commands that only read: ``runs list``, ``runs show`` (and its other name, ``status``), ``runs
history`` and ``stats``. Their backend is opened read-only: they never create a database, migrate one, or
write to it (see :mod:`conveyor.backends.read_only`)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from conveyor.backends.listing import MAX_PAGE_SIZE
from conveyor.cli_arguments import age, run_state, text, whole_number, workflow_id
from conveyor.cli_commands import CommandMaker
from conveyor.cli_output import (
    Output,
    bottlenecks_table,
    history_table,
    performance_table,
    runs_table,
    window_line,
)
from conveyor.runtime.app import Conveyor

DEFAULT_STATS_WINDOW = "24h"


def list_runs(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor runs list``: a page of runs, newest first; the token of the next page after it."""
    out = Output(json=arguments.json)
    page = app.runs(arguments.workflow, state=arguments.state, limit=arguments.limit, page=arguments.page)
    if out.json:
        out.data({"runs": [run.to_dict() for run in page], "next_page": page.next_page})
        return 0
    out.show(runs_table(page.runs))
    if page.next_page is not None:
        out.show(f"more: --page {page.next_page}")
    return 0


def show_run(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor runs show ID`` (or ``status ID``): the run and its steps; exit 1 if it failed."""
    status = app.status(arguments.workflow_id)
    Output(json=arguments.json).run(status)
    return 1 if status.is_failed() else 0


def run_history(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor runs history ID``: the run's events, oldest first."""
    out = Output(json=arguments.json)
    events = app.history(arguments.workflow_id, after_seq=arguments.after)
    if out.json:
        out.data([event.to_dict() for event in events])
    else:
        out.show(history_table(events))
    return 0


def stats(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor stats``: each workflow's performance, and the steps worst bottleneck first, over the
    runs that finished in the window (the last ``--since``, 24 hours by default)."""
    out = Output(json=arguments.json)
    until = app.clock.now()
    window: dict[str, Any] = {
        "since": dt.timedelta(seconds=arguments.since),
        "until": until,
        "workflow": arguments.workflow,
        "namespace": arguments.namespace,
    }
    performance = app.performance(**window)
    bottlenecks = app.bottlenecks(**window)
    if out.json:
        out.data({"performance": performance.to_dict(), "bottlenecks": bottlenecks.to_dict()})
        return 0
    out.show(window_line(performance), performance_table(performance), "", bottlenecks_table(bottlenecks))
    return 0


def add_commands(command: CommandMaker, runs: Any) -> None:
    """Add ``runs list``, ``runs show``, ``runs history`` (in the ``runs`` group), ``status``, ``stats``."""
    listing = command("list", "list runs, newest first, a page at a time", group=runs, reads=True)
    listing.add_argument("--workflow", type=text, help="only this workflow's runs (its name)")
    listing.add_argument(
        "--state", type=run_state, action="append", help="only runs in this state (repeatable)"
    )
    listing.add_argument(
        "--limit", type=whole_number(1, MAX_PAGE_SIZE), default=20, help="runs per page (default 20)"
    )
    listing.add_argument("--page", type=text, help="the page token printed after the page before")
    listing.set_defaults(run=list_runs)

    for shown in (
        command("show", "a run and its steps; exit 1 if it failed", group=runs, reads=True),
        command("status", "the same as `conveyor runs show`", reads=True),
    ):
        shown.add_argument("workflow_id", type=workflow_id, help="the run's workflow id")
        shown.set_defaults(run=show_run)

    history = command("history", "a run's event history, oldest first", group=runs, reads=True)
    history.add_argument("workflow_id", type=workflow_id, help="the run's workflow id")
    history.add_argument(
        "--after", type=whole_number(0, 2**31), default=0, help="only events after this seq (0)"
    )
    history.set_defaults(run=run_history)

    figures = command("stats", "performance and bottlenecks of the runs that finished lately", reads=True)
    figures.add_argument(
        "--since",
        type=age,
        default=age(DEFAULT_STATS_WINDOW),
        metavar="AGE",
        help=f"the window: runs that finished this long ago or since: 90m, 24h, 7d ({DEFAULT_STATS_WINDOW})",
    )
    figures.add_argument("--workflow", type=text, help="only this workflow's runs (its name)")
    figures.add_argument("--namespace", type=text, help="only the workflows registered in this namespace")
    figures.set_defaults(run=stats)
