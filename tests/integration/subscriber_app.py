"""The app of the durable-subscriber crash test, loaded by ``conveyor worker --app subscriber_app``.

Its durable subscriber ``ledger`` takes every event and appends ``<pid> <event id>`` to $SUBSCRIBER_LOG with
an unbuffered write, so the line survives the process dying. On the event named $DIE_AT, the first time (the
file $DIE_MARKER remembers it), it kills its own process with SIGKILL: with $DIE_WHEN "after", once the
line is written (the event handled, its cursor not yet saved); with "before", before writing it (the event
committed, never handled). The run's second step waits for that marker, so the process always dies mid-run.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from conveyor import Conveyor, Event, Flow, task


def _append(line: str) -> None:
    descriptor = os.open(os.environ["SUBSCRIBER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def _first_time() -> bool:
    try:
        os.close(os.open(os.environ["DIE_MARKER"], os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


@task
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return order


@task
def charge(order: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not os.path.exists(os.environ["DIE_MARKER"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return order


@task
def confirm(order: dict[str, Any]) -> str:
    return f"confirmed {order['id']}"


CHECKOUT = Flow("checkout", version="1").then(reserve).then(charge).then(confirm).build()

app = Conveyor(workflows=[CHECKOUT])


@app.on("*", durable="ledger")
def ledger(event: Event) -> None:
    dies = event.id == os.environ.get("DIE_AT") and _first_time()
    if dies and os.environ.get("DIE_WHEN") == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    _append(f"{os.getpid()} {event.id}\n")
    if dies:
        os.kill(os.getpid(), signal.SIGKILL)
