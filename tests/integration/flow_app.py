"""Workflows with routes, loops and maps for the worker-process tests (``conveyor worker --app flow_app``).

Each step notes its start and end in $WORKER_LOG (see ``worker_app.note``), which survives a SIGKILL.
"""

from __future__ import annotations

from typing import Any

from worker_app import die_on_first_attempt, note

from conveyor import Conveyor, Flow, StepContext, task


@task
def look(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    note(context, "start")
    note(context, "done")
    return order


@task
def by_speed(order: dict[str, Any], context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return str(order["speed"])


@task
def express(order: dict[str, Any], context: StepContext) -> str:
    die_on_first_attempt(context)  # the worker dies here once: after the route's choice was recorded
    return f"express {order['id']}"


@task
def standard(order: dict[str, Any], context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return f"standard {order['id']}"


@task
def notify(shipment: str, context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return f"sent {shipment}"


ROUTED = (
    Flow("routed")
    .then(look)
    .route(by_speed, branches={"express": express, "standard": standard})
    .then(notify)
    .build()
)
"""look -> route by speed: express (kills its worker on its first attempt) | standard -> notify."""


app = Conveyor(workflows=[ROUTED])
"""The runtime ``conveyor worker --app flow_app`` loads (its backend comes from ``--backend``)."""
