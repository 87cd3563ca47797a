"""The in-process run the operator tests kill and resume: ``python operator_app.py URL WORKFLOW_ID MODE``.

MODE ``run`` runs it with ``run_durable_workflow`` (its ``pack`` step hangs while $HANG_IN_PACK is set, after
logging ``pack:hanging``), ``resume`` resumes it with ``resume_workflow`` (Sayiir's arguments). Each step
appends its name to $STEP_LOG unbuffered, so the log survives the process, and annotates the run. Prints the
status as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from conveyor import Conveyor, Flow, StepContext, resume_workflow, run_durable_workflow, task
from conveyor.backends.urls import open_backend


def note(name: str) -> None:
    descriptor = os.open(os.environ["STEP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, f"{name}\n".encode())
    finally:
        os.close(descriptor)


@task
def reserve(order: dict[str, Any], context: StepContext) -> str:
    note("reserve")
    context.annotate("reserved", {"order": order["id"]})
    return "r1"


@task
def pack(reservation: str, context: StepContext) -> str:
    note("pack")
    context.annotate("packed", {"pid": os.getpid()})  # committed only with pack's result
    if os.environ.get("HANG_IN_PACK"):
        note("pack:hanging")
        time.sleep(120)
    return "p1"


@task
def ship(parcel: str, context: StepContext) -> str:
    note("ship")
    context.annotate("checkout_completed", {"steps_completed": 3})
    return f"shipped {parcel}"


SHIPPING = Flow("shipping").then(reserve).then(pack).then(ship).build()

app = Conveyor(workflows=[SHIPPING])
"""The runtime ``conveyor resume --app operator_app:app`` loads."""


def main() -> None:
    url, workflow_id, mode = sys.argv[1:4]
    backend = open_backend(url)
    if mode == "run":
        status = run_durable_workflow(SHIPPING, workflow_id, {"id": 1}, backend)
    else:
        status = resume_workflow(SHIPPING, workflow_id, backend)
    actions = [[action.action, action.by] for action in status.operator_actions]
    notes = [[annotation.name, annotation.content] for annotation in status.annotations]
    print(
        json.dumps(
            {"state": status.state.value, "output": status.output(), "actions": actions, "notes": notes}
        )
    )
    backend.close()


if __name__ == "__main__":
    main()
