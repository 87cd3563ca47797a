"""The commands that act on runs: ``start``, ``signal``, ``cancel``, ``pause``, ``resume`` (and its other
name, ``unpause``), ``retry``, ``skip``, ``complete`` and ``compensate``. Each prints the run as it stands
afterwards (as ``runs show`` does); what a person does by hand is logged with ``--by`` and ``--reason``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from conveyor.cli_arguments import json_input, positive_seconds, text, workflow_id
from conveyor.cli_commands import CommandMaker
from conveyor.cli_output import Output
from conveyor.engine.handles import RunHandle
from conveyor.engine.status import WorkflowStatus
from conveyor.runtime.app import Conveyor

WAIT_TIMED_OUT = 3
"""The exit status of ``start --wait --timeout`` when the run has not ended in time."""
_PROGRESS_SECONDS = 0.25


def start(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor start NAME``: record a run for a worker (and with ``--wait``, wait for its end)."""
    out = Output(json=arguments.json)
    handle = app.start(
        arguments.name,
        arguments.input,
        workflow_id=arguments.workflow_id,
        version=arguments.version,
        correlation_id=arguments.correlation_id,
    )
    if arguments.wait:
        try:
            status = _wait(handle, arguments.timeout, out)
        except TimeoutError as exc:
            out.note(f"conveyor: {exc} (a worker runs it: is one running?)")
            return WAIT_TIMED_OUT
    else:
        status = handle.status()
    out.run(status)
    return 1 if status.is_failed() else 0


def _wait(handle: RunHandle, timeout: float | None, out: Output) -> WorkflowStatus:
    """Wait for the run's end, showing how far it has come while stderr is a terminal."""
    with out.progress(f"run {handle.workflow_id}: waiting for a worker") as update:
        if update is None:
            return handle.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return handle.wait(_PROGRESS_SECONDS if left is None else min(_PROGRESS_SECONDS, left))
            except TimeoutError:
                if left is not None and left <= _PROGRESS_SECONDS:
                    raise
            status = handle.status()
            done, steps = len(status.completed_steps), len(status.steps)
            update(f"run {handle.workflow_id}: {status.state.value}, {done} of {steps} steps done")


def send_signal(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor signal ID NAME``: keep a signal for the run; say its id."""
    out = Output(json=arguments.json)
    signal_id = app.send_signal(arguments.workflow_id, arguments.name, arguments.payload)
    if out.json:
        out.data({"workflow_id": arguments.workflow_id, "signal": arguments.name, "signal_id": signal_id})
    else:
        out.show(f"signal {arguments.name!r} sent to run {arguments.workflow_id!r} (signal {signal_id})")
    return 0


def steer(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``cancel``, ``pause`` and ``compensate``: stored with the run, from any process; the run printed."""
    workflow_id, by, reason = arguments.workflow_id, arguments.by, arguments.reason or ""
    if arguments.command == "cancel":
        status = app.cancel(workflow_id, reason, by=by)
    elif arguments.command == "compensate":
        status = app.compensate(workflow_id, reason)
    else:
        status = app.pause(workflow_id, by=by, reason=reason)
    Output(json=arguments.json).run(status)
    return 0


def resume(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor resume ID``: a paused run's pause is lifted (a worker goes on with it); a run that is
    not paused, or any with ``--here``, is driven here to its end (which needs ``--app``)."""
    workflow_id, by, reason = arguments.workflow_id, arguments.by, arguments.reason or ""
    if not arguments.here and app.status(workflow_id).is_paused():
        status = app.unpause(workflow_id, by=by, reason=reason)
    else:
        status = app.resume(workflow_id, by=by, reason=reason)
    Output(json=arguments.json).run(status)
    return 1 if status.is_failed() else 0


def operate(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``retry``, ``skip`` and ``complete``: done by hand, here; the run printed; exit 1 if it failed."""
    workflow_id, by, reason = arguments.workflow_id, arguments.by, arguments.reason or ""
    if arguments.command == "retry":
        status = app.retry(workflow_id, from_step=arguments.from_step, by=by, reason=reason)
    elif arguments.command == "skip":
        status = app.skip_step(workflow_id, arguments.step, arguments.result, by=by, reason=reason)
    else:
        status = app.complete_by_hand(workflow_id, arguments.output, by=by, reason=reason)
    Output(json=arguments.json).run(status)
    return 1 if status.is_failed() else 0


def add_start(start_command: argparse.ArgumentParser) -> None:
    """The arguments of ``conveyor start``."""
    start_command.add_argument("name", type=text, help="the workflow's name")
    start_command.add_argument(
        "--input", type=json_input, default="null", help="the input, as JSON (default: null)"
    )
    start_command.add_argument("--workflow-id", type=workflow_id, help="the run's id (default: a new one)")
    start_command.add_argument("--version", type=text, help="the workflow's version (default: the newest)")
    start_command.add_argument(
        "--correlation-id", type=text, help="an id of your own to find the run by (a request's, say)"
    )
    start_command.add_argument(
        "--wait", action="store_true", help="wait for the run to end (a worker runs it)"
    )
    start_command.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        help=f"with --wait, give up after this many seconds (exit {WAIT_TIMED_OUT})",
    )
    start_command.set_defaults(run=start)


def add_commands(command: CommandMaker) -> None:
    """Add ``signal``, ``cancel``, ``pause``, ``resume`` (``unpause``), ``retry``, ``skip``, ``complete``
    and ``compensate``."""
    signal = command("signal", "send a signal to a run (kept until a wait_for_signal step takes it)")
    signal.add_argument("workflow_id", type=workflow_id)
    signal.add_argument("name", type=text, help="the signal's name")
    signal.add_argument("--payload", type=json_input, default="null", help="its payload, as JSON (null)")
    signal.set_defaults(run=send_signal)

    def by_hand(
        name: str, help: str, run: Any, *, needs_app: bool = False, aliases: tuple[str, ...] = ()
    ) -> argparse.ArgumentParser:
        added = command(name, help, needs_app=needs_app, aliases=aliases)
        added.add_argument("workflow_id", type=workflow_id)
        added.add_argument("--by", type=text, default=None, help="who does this (default: the OS user)")
        added.add_argument("--reason", type=text, default=None, help="why (stored with the run)")
        added.set_defaults(run=run)
        return added

    by_hand("cancel", "cancel a run: its completed steps are undone, it ends cancelled", steer)
    by_hand("pause", "pause a run: no new step starts until it is resumed", steer)
    resumed = by_hand(
        "resume",
        "go on with a paused run (a worker takes it); drive here one whose process died (needs --app)",
        resume,
        aliases=("unpause",),
    )
    resumed.add_argument(
        "--here", action="store_true", help="drive the run here to its end, paused or not (needs --app)"
    )
    retry = by_hand("retry", "run a failed run again here, from where it failed", operate, needs_app=True)
    retry.add_argument(
        "--from-step",
        type=text,
        default=None,
        help="run this step and every step after it that depends on it again",
    )
    skip = by_hand(
        "skip",
        "complete a failed step with a given result and drive the run on here",
        operate,
        needs_app=True,
    )
    skip.add_argument("step", type=text, help="the failed step")
    skip.add_argument("--result", type=json_input, default="null", help="its result, as JSON (default: null)")
    complete = by_hand("complete", "mark a run completed by hand", operate)
    complete.add_argument("--output", type=json_input, default="null", help="its output, as JSON (null)")
    by_hand(
        "compensate",
        "undo a run, even a completed one: its completed steps' undos run, it ends cancelled",
        steer,
    )
