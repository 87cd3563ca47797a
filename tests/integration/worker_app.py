"""Workflows for the worker-process tests, loaded by ``conveyor worker --app worker_app``.

Every step start and end is appended to $WORKER_LOG as ``pid workflow_id step event time`` with an
unbuffered write, so the log survives a worker killed with SIGKILL.
"""

from __future__ import annotations

import os
import time
from typing import Any

from conveyor import Conveyor, Flow, StepContext, task


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


app = Conveyor(workflows=[ORDERS, CRASHING, SLOW])
"""The runtime ``conveyor worker --app worker_app`` loads (its backend comes from ``--backend``)."""
