"""Workflows for the child-workflow process tests, loaded by ``conveyor worker --app children_app``.

``parcel`` (the parent) reserves, then runs ``shipping`` as a child run, then confirms. The child packs
for $PACK_SECONDS (default 0.01) and labels. Every step start and end is logged as in ``worker_app``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from worker_app import note

from conveyor import Conveyor, Flow, StepContext, task


@task
def reserve(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    note(context, "start")
    note(context, "done")
    return {**order, "reserved": True}


@task
def pack(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    note(context, "start")
    time.sleep(float(os.environ.get("PACK_SECONDS", "0.01")))
    note(context, "done")
    return {**order, "parcel": f"P-{order['id']}"}


@task
def label(parcel: dict[str, Any], context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return f"label for {parcel['parcel']}"


@task
def confirm(shipped: str, context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return f"confirmed: {shipped}"


SHIPPING = Flow("shipping").then(pack).then(label).build()
PARCEL = Flow("parcel").then(reserve).then_flow(SHIPPING).then(confirm).build()

app = Conveyor(workflows=[PARCEL])
"""The child workflow is registered with its parent (then_flow was given it)."""
