"""Subscribers on every backend: the cursors durable subscribers keep, durable delivery resumed from them by a
new runtime, consumer threads, and in-process subscribers fed by a worker's writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from conveyor import Conveyor, Event, Flow, task
from conveyor.backends.base import Backend
from conveyor.runtime.durable import DurableSubscription, DurableThreads

HOUR = 3600.0


@task
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return order


@task
def charge(order: dict[str, Any]) -> dict[str, Any]:
    return order


CHECKOUT = Flow("checkout", version="1").then(reserve).then(charge).build()  # 6 events a run


def eventually(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for ``predicate``: PostgreSQL's feed holds events back while an older transaction anywhere on
    the server is still open (another test's), so what was just committed may take a moment to read."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_cursor_is_claimed_by_one_owner_saved_released_and_taken_over(backend: Backend) -> None:
    """Created at the feed's start; another owner is refused while the lease lives; the position survives
    a release; a save by an owner that lost the claim stores nothing."""
    first = backend.claim_event_cursor("audit", owner="a", lease_seconds=HOUR)
    assert (first.claimed, first.position, first.owner) == (True, None, "a")
    assert backend.load_event_cursor("audit") is None
    assert backend.save_event_cursor("audit", "7", owner="a", lease_seconds=HOUR)
    refused = backend.claim_event_cursor("audit", owner="b", lease_seconds=HOUR)
    assert (refused.claimed, refused.owner) == (False, "a")
    assert not backend.save_event_cursor("audit", "9", owner="b", lease_seconds=HOUR)
    again = backend.claim_event_cursor("audit", owner="a", lease_seconds=HOUR)
    assert (again.claimed, again.position) == (True, "7")
    backend.release_event_cursor("audit", owner="b")  # not b's: nothing happens
    assert not backend.claim_event_cursor("audit", owner="b", lease_seconds=HOUR).claimed
    backend.release_event_cursor("audit", owner="a")
    taken = backend.claim_event_cursor("audit", owner="b", lease_seconds=HOUR)
    assert (taken.claimed, taken.position) == (True, "7")
    assert not backend.save_event_cursor("audit", "8", owner="a", lease_seconds=HOUR)
    over = backend.claim_event_cursor("audit", owner="c", lease_seconds=HOUR, take_over_from="b")
    assert (over.claimed, over.position) == (True, "7")
    assert backend.load_event_cursor("audit") == "7"
    assert backend.load_event_cursor("other") is None


def test_a_lease_that_ran_out_is_claimed_by_another_owner(backend: Backend) -> None:
    """The lease is judged by the backend's clock: a claim for 0.05 s is free soon after."""
    assert backend.claim_event_cursor("audit", owner="a", lease_seconds=0.05).claimed
    time.sleep(0.1)  # the backend's own clock must move on: no fake clock reaches the database
    assert backend.claim_event_cursor("audit", owner="b", lease_seconds=HOUR).claimed


def test_a_durable_subscriber_gets_every_event_once_and_a_new_runtime_resumes_from_its_cursor(
    backend: Backend,
) -> None:
    """Consumed, restarted (a new runtime on the same backend), consumed again: nothing twice, nothing
    missed, in commit order."""
    seen: list[str] = []

    def runtime() -> Conveyor:
        app = Conveyor(backend, workflows=[CHECKOUT])
        app.on("*", durable="audit")(lambda event: seen.append(event.id))
        return app

    app = runtime()
    app.run(CHECKOUT, {}, workflow_id="order-1")
    app.run(CHECKOUT, {}, workflow_id="order-2")
    eventually(lambda: app.consume() >= 0 and len(seen) == 12, "the first two runs' events")
    assert seen == [f"order-{n}#{seq}" for n in (1, 2) for seq in range(1, 7)]
    app.close()

    restarted = runtime()
    restarted.run(CHECKOUT, {}, workflow_id="order-3")
    eventually(lambda: restarted.consume() >= 0 and len(seen) == 18, "the third run's events")
    assert seen[12:] == [f"order-3#{seq}" for seq in range(1, 7)]
    assert restarted.consume() == 0


def test_consumer_threads_deliver_as_runs_go_and_let_go_of_the_cursor_when_stopped(backend: Backend) -> None:
    """consuming() runs the durable subscribers beside the caller; leaving the block releases the cursors."""
    app = Conveyor(backend, workflows=[CHECKOUT])
    completed: list[str] = []
    app.on("task.completed", durable="completions")(lambda event: completed.append(event.workflow_id))
    with app.consuming(poll_interval_seconds=0.05):
        app.run(CHECKOUT, {}, workflow_id="order-1")
        app.run(CHECKOUT, {}, workflow_id="order-2")
        eventually(lambda: len(completed) == 2, "both completions")
    assert completed == ["order-1", "order-2"]
    assert backend.claim_event_cursor("completions", owner="someone else", lease_seconds=HOUR).claimed


def test_in_process_subscribers_get_the_events_a_worker_writes(backend: Backend) -> None:
    """Runs driven by a worker of this process (its batched writes) reach in-process subscribers."""
    app = Conveyor(backend, workflows=[CHECKOUT])
    seen: list[Event] = []
    app.on("step.completed", "run.completed")(seen.append)
    for number in range(3):
        app.start(CHECKOUT, {}, workflow_id=f"order-{number}")
    app.worker(concurrency=2).run(until_idle=True)
    assert app.flush_subscribers(10)
    assert sorted((event.workflow_id, event.kind, event.step) for event in seen) == sorted(
        (f"order-{number}", kind, step)
        for number in range(3)
        for kind, step in [
            ("step.completed", "reserve"),
            ("step.completed", "charge"),
            ("run.completed", None),
        ]
    )
    assert {event.worker for event in seen} != {None}


def test_two_consumers_of_one_name_deliver_a_slow_handlers_events_once_and_get_through_the_feed(
    backend: Backend,
) -> None:
    """Two consumers (two workers) under one name, a handler slow enough that a page takes longer than the
    lease: the one delivering renews its claim between events, so the other stands by and every event is
    delivered once. (The claim was renewed only after a whole page: it ran out mid-page, the other took
    the cursor at the page's start, the first's save was refused, and so on for ever: the first page was
    delivered again and again and the feed never got past it.)"""
    app = Conveyor(backend, workflows=[CHECKOUT])
    for number in range(5):
        app.run(CHECKOUT, {}, workflow_id=f"order-{number}")
    expected = [f"order-{number}#{seq}" for number in range(5) for seq in range(1, 7)]
    eventually(lambda: len(backend.read_events(limit=100).events) == len(expected), "the feed")
    delivered: list[str] = []
    lock = threading.Lock()

    def slow(event: Event) -> None:
        time.sleep(0.1)  # 30 events: 3 s a page, the lease 1 s
        with lock:
            delivered.append(event.id)

    subscription = DurableSubscription("audit", None, slow)
    consumers = [
        DurableThreads([subscription], backend, owner=owner, lease_seconds=1.0, poll_seconds=0.05)
        for owner in ("worker-a", "worker-b")
    ]
    for consumer in consumers:
        consumer.start()
    try:
        eventually(lambda: len(set(delivered)) == len(expected), "every event", timeout=20)
    finally:
        for consumer in consumers:
            consumer.stop()
    assert sorted(set(delivered)) == sorted(expected)
    assert len(delivered) == len(expected), "an event was delivered twice"
