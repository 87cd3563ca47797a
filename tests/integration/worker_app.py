"""Workflows for the worker-process tests, loaded by ``conveyor worker --app worker_app``.

Every step start and end is appended to $WORKER_LOG as ``pid workflow_id step event time`` with an
unbuffered write, so the log survives a worker killed with SIGKILL.
"""

from __future__ import annotations

import os
import time
from typing import Any

from conveyor import Conveyor, Flow, StepContext, Workflow, task


def note(context: StepContext, event: str) -> None:
    line = f"{os.getpid()} {context.workflow_id} {context.step_name} {event} {time.time():.6f}\n"
    descriptor = os.open(os.environ["WORKER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def step_body(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    note(context, "start")
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.002")))
    note(context, "done")
    return {**order, context.step_name: True}


@task
def reserve(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    return step_body(order, context)


@task
def charge(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    return step_body(order, context)


@task
def confirm(order: dict[str, Any], context: StepContext) -> str:
    step_body(order, context)
    return f"confirmed {order['id']}"


ORDERS = Flow("orders").then(reserve).then(charge).then(confirm).build()


@task
def crash(order: dict[str, Any], context: StepContext) -> None:
    note(context, "start")
    os._exit(3)


CRASHING = Flow("crashing").then(crash).build()


@task
def slow(order: dict[str, Any], context: StepContext) -> str:
    note(context, "start")
    time.sleep(1.0)
    note(context, "done")
    return "slow done"


SLOW = Flow("slow").then(slow).build()


@task
def long(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    note(context, "start")
    time.sleep(float(os.environ.get("LONG_STEP_SECONDS", "3.0")))
    note(context, "done")
    return {**order, "long": True}


@task
def after_long(order: dict[str, Any], context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return "long done"


LONG = Flow("long").then(long).then(after_long).build()
"""A step of 3 s ($LONG_STEP_SECONDS), longer than the lease the tests give, then a short one."""


def die_on_first_attempt(context: StepContext) -> None:
    """End this process in the step's first attempt (a marker file under $KILL_MARKS remembers it)."""
    marker = os.path.join(os.environ["KILL_MARKS"], f"{context.workflow_id}.{context.step_name}")
    note(context, "start")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        note(context, "done")
        return
    os._exit(3)


def killing_step(value: int, context: StepContext) -> int:
    die_on_first_attempt(context)
    return value + 1


def _ten_kills() -> Workflow:
    flow = Flow("ten-kills")
    for number in range(1, 11):
        flow = flow.then(task(name=f"step{number}")(killing_step))
    return flow.build()


TEN_KILLS = _ten_kills()
"""Ten steps, each of which kills its worker on its first attempt and succeeds on its second."""


SLEEPING = (
    Flow("sleeping")
    .then(reserve)
    .delay("nap", float(os.environ.get("NAP_SECONDS", "4")))
    .then(confirm)
    .build()
)
"""Reserve, sleep $NAP_SECONDS (4 s by default) durably, confirm."""


@task
def record_ticks(ticks: Any, context: StepContext) -> Any:
    note(context, "start")
    note(context, "done")
    return ticks


def _two_ticks() -> Workflow:
    flow = Flow("two-ticks").wait_for_signal("tick", step_name="first", timeout=120)
    return flow.wait_for_signal("tick", step_name="second", timeout=120).then(record_ticks).build()


TWO_TICKS = _two_ticks()
"""Two waits for the signal 'tick', one after the other, then a step that records the second payload."""


def _die_around_consuming(when: str) -> None:
    """With $KILL_ON_CONSUME = before / after: end this process just before (or just after) the first
    transaction that consumes a signal commits, once (a marker under $KILL_MARKS remembers it)."""
    from conveyor.backends.postgres import PostgresBackend
    from conveyor.backends.sqlite import SqliteBackend

    for backend_class in (PostgresBackend, SqliteBackend):
        real = backend_class.record_checkpoint_consuming

        def consuming(self: Any, checkpoint: Any, signal_id: int, real: Any = real) -> None:
            marker = os.path.join(os.environ["KILL_MARKS"], "consumed")
            try:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                real(self, checkpoint, signal_id)
                return
            if when == "after":
                real(self, checkpoint, signal_id)
            os._exit(3)

        backend_class.record_checkpoint_consuming = consuming  # type: ignore[method-assign]


if os.environ.get("KILL_ON_CONSUME"):
    _die_around_consuming(os.environ["KILL_ON_CONSUME"])


def _note_undo(result: str) -> None:
    line = f"{os.getpid()} {result} book undo {time.time():.6f}\n"
    descriptor = os.open(os.environ["WORKER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


@task(compensate=_note_undo)
def book(order: dict[str, Any], context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return context.workflow_id


@task
def work(booking: str, context: StepContext) -> str:
    """Works for $WORK_SECONDS (default 1), looking every 20 ms whether its run was cancelled."""
    note(context, "start")
    until = time.monotonic() + float(os.environ.get("WORK_SECONDS", "1.0"))
    while time.monotonic() < until:
        try:
            context.raise_if_cancelled()
        except Exception:  # what user code writes: the cancel must not be swallowed here
            note(context, "swallowed")
        time.sleep(0.02)
    note(context, "done")
    return booking


@task
def finish(booking: str, context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return "finished"


STEERED = Flow("steered").then(book).then(work).then(finish).build()
"""book (undo logged as ``book undo``), a working step that heeds a cancel, then finish."""


app = Conveyor(workflows=[ORDERS, CRASHING, SLOW, LONG, TEN_KILLS, SLEEPING, TWO_TICKS, STEERED])
"""The runtime ``conveyor worker --app worker_app`` loads (its backend comes from ``--backend``)."""
