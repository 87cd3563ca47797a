"""The runtime the CLI tests load with ``--app cli_shop_app``: a greeting, an order whose charge is declined
while the file ``$SHOP_DECLINES`` exists, and an approval that waits for a signal."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor import Conveyor, Flow, NonRetryableError, task


@task
def greet(name: str) -> str:
    return f"hello {name}"


@task
def reserve(order: dict[str, object]) -> str:
    return "r1"


@task
def charge(reservation: str) -> str:
    declines = os.environ.get("SHOP_DECLINES", "")
    if declines and Path(declines).exists():
        raise NonRetryableError("card declined")
    return "c1"


@task
def ship(charge_id: str) -> str:
    return f"shipped after {charge_id}"


GREET = Flow("greet").then(greet).build()
ORDER = Flow("order").then(reserve).then(charge).then(ship).build()
APPROVAL = Flow("approval").wait_for_signal("approved").build()

app = Conveyor(workflows=[GREET, ORDER, APPROVAL])
