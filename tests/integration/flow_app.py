"""Workflows with routes, loops and maps for the worker-process tests (``conveyor worker --app flow_app``).

Each step notes its start and end in $WORKER_LOG (see ``worker_app.note``), which survives a SIGKILL.
"""

from __future__ import annotations

import os
import time
from typing import Any

from worker_app import die_on_first_attempt, note

from conveyor import Conveyor, Flow, LoopResult, NonRetryableError, StepContext, task


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


def die_once(context: StepContext, tag: str) -> None:
    """End this process the first time it gets here for ``tag`` (a marker under $KILL_MARKS remembers)."""
    marker = os.path.join(os.environ["KILL_MARKS"], f"{context.workflow_id}.{tag}")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    os._exit(3)


@task
def climb(n: int, context: StepContext) -> LoopResult[int]:
    """Five iterations; the worker dies in the middle of iteration 3, once."""
    note(context, f"start{context.index}")
    if context.index == 3:
        die_once(context, "climb3")
    note(context, f"done{context.index}")
    return LoopResult.done(n) if n >= 4 else LoopResult.again(n + 1)


LOOPING = Flow("looping").loop(climb, max_iterations=10).then(notify).build()
"""A loop of five iterations whose worker dies once in iteration 3, then notify."""


def hang_once(context: StepContext, tag: str) -> None:
    """Hang the first time this process gets here for ``tag`` (the test kills it meanwhile); go on after."""
    marker = os.path.join(os.environ["KILL_MARKS"], f"{context.workflow_id}.{tag}")
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    time.sleep(60)


@task
def pack(n: int, context: StepContext) -> str:
    """One element of a map: elements 3 and 4 hang on their first run, holding both slots of the map."""
    note(context, f"start{context.index}")
    if n in (3, 4):
        hang_once(context, f"pack{n}")
    note(context, f"done{context.index}")
    return f"box {n}"


@task
def count(boxes: list[str], context: StepContext) -> str:
    note(context, "start")
    note(context, "done")
    return f"sent {len(boxes)}: {', '.join(boxes)}"


MAPPED = Flow("mapped").map(pack, max_concurrency=2).then(count).build()
"""A map of six elements, two at a time, whose elements 3 and 4 hang on their first run; then count."""


undos_done = 0
"""How many undos of ``hold``'s elements this process finished."""


def give_back(result: int, context: StepContext) -> None:
    """The undo of one element: the second undo a process runs hangs, once (the test kills it then)."""
    global undos_done
    note(context, f"undo{context.index}")
    if undos_done == 1:
        hang_once(context, "undo")
    note(context, f"undone{context.index}")
    undos_done += 1


@task(compensate=give_back)
def hold(n: int, context: StepContext) -> int:
    note(context, f"start{context.index}")
    note(context, f"done{context.index}")
    return n


@task
def refuse(held: list[int], context: StepContext) -> None:
    note(context, "start")
    raise NonRetryableError("the order was refused")


UNMAPPED = Flow("unmapped").map(hold, max_concurrency=2).then(refuse).build()
"""A map of four elements, then a step that fails for good: the four are undone, and the second undo of a
process hangs once."""


app = Conveyor(workflows=[ROUTED, LOOPING, MAPPED, UNMAPPED])
"""The runtime ``conveyor worker --app flow_app`` loads (its backend comes from ``--backend``)."""
