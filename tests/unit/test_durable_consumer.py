"""A durable subscriber's consumer, on the memory backend with its pauses recorded instead of slept: a failing
handler is tried again with backoff and never skipped (unless its policy gives up, loudly), progress before
a failure is kept, and one consumer at a time holds a cursor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor, Event, Flow, InMemoryBackend, RetryPolicy, WebhookDeliveryError, task
from conveyor.runtime.durable import DEFAULT_BACKOFF, DurableConsumer, DurableSubscription, DurableThreads
from conveyor.runtime.ownership import PROCESS


@task
def only_step(value: int) -> int:
    return value + 1


FLOW = Flow("one-step", version="1").then(only_step).build()  # 4 events a run


class Pauses:
    """A pause that records the delays asked for and never sleeps (True once ``stop_after`` passed)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return self.stop_after is not None and len(self.delays) >= self.stop_after


def backend_with_runs(count: int) -> InMemoryBackend:
    backend = InMemoryBackend()
    app = Conveyor(backend, workflows=[FLOW])
    for number in range(count):
        app.run(FLOW, number, workflow_id=f"run-{number}")
    return backend


def consumer(
    backend: InMemoryBackend,
    handler: Any,
    *,
    owner: str = "me",
    retry: RetryPolicy | None = None,
    pause: Pauses | None = None,
    page_size: int = 100,
    start: Any = "beginning",
) -> DurableConsumer:
    subscription = DurableSubscription("audit", None, handler, retry, start)
    return DurableConsumer(
        subscription,
        backend,
        owner=owner,
        pause=pause or Pauses(),
        page_size=page_size,
        random_unit=lambda: 0.5,
    )


@contextlib.contextmanager
def consumed_in_a_thread(
    subscription: DurableSubscription, backend: InMemoryBackend
) -> Iterator[DurableThreads]:
    """``subscription`` consumed on a thread of its own for the block (as conveyor worker does)."""
    threads = DurableThreads([subscription], backend, owner="me", poll_seconds=0.02)
    threads.start()
    try:
        yield threads
    finally:
        threads.stop()


def test_every_event_is_delivered_once_in_commit_order_and_the_cursor_saved() -> None:
    """Paged reads hand over the whole feed; the saved position makes the next drain deliver nothing."""
    backend = backend_with_runs(3)
    seen: list[str] = []
    first = consumer(backend, lambda event: seen.append(event.id), page_size=5)
    assert first.drain() == 12
    assert seen == [event.id for event in backend.read_events(limit=100).events]
    assert consumer(backend, seen.append).drain() == 0
    assert backend.load_event_cursor("audit") == "12"


def test_a_failing_handler_gets_the_event_again_with_backoff_and_nothing_is_skipped() -> None:
    """Three failures, then success: four attempts, the default policy's growing delays, then on."""
    backend = backend_with_runs(1)
    calls: list[str] = []

    def flaky(event: Event) -> None:
        calls.append(event.id)
        if event.id == "run-0#2" and calls.count("run-0#2") <= 3:
            raise ConnectionError("the ledger is down")

    pauses = Pauses()
    assert consumer(backend, flaky, pause=pauses).drain() == 4
    assert calls == ["run-0#1", "run-0#2", "run-0#2", "run-0#2", "run-0#2", "run-0#3", "run-0#4"]
    assert pauses.delays == [DEFAULT_BACKOFF.delay_after(n, 0.5) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_a_policy_that_runs_out_gives_the_event_up_loudly_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With retry=RetryPolicy(max_attempts=2), a poison event is logged as given up, by id; the rest flow."""
    backend = backend_with_runs(1)
    handled: list[str] = []

    def poison(event: Event) -> None:
        if event.seq == 2:
            raise ValueError("cannot parse")
        handled.append(event.id)

    with caplog.at_level(logging.ERROR, logger="conveyor.subscribers"):
        delivered = consumer(backend, poison, retry=RetryPolicy(max_attempts=2, initial_delay_secs=0)).drain()
    assert delivered == 4
    assert handled == ["run-0#1", "run-0#3", "run-0#4"]
    assert (
        "gave up on event run-0#2 (step.started) after 2 attempt(s): ValueError: cannot parse" in caplog.text
    )


def test_a_receivers_retry_after_lengthens_the_wait() -> None:
    """A WebhookDeliveryError's retry_after_seconds is waited for when it is longer than the backoff."""
    backend = backend_with_runs(1)
    failed: list[int] = []

    def busy(event: Event) -> None:
        if not failed:
            failed.append(event.seq)
            raise WebhookDeliveryError("HTTP 429", retry_after_seconds=30)

    pauses = Pauses()
    consumer(backend, busy, pause=pauses).drain()
    assert pauses.delays == [10.0, 10.0, 10.0]  # 30 s, waited a third of the lease at a time (renewing it)


def test_events_handled_before_a_failure_are_not_delivered_again_after_a_stop() -> None:
    """The cursor is saved just before the failing event, so a new consumer starts there."""
    backend = backend_with_runs(2)
    first: list[str] = []

    def stuck(event: Event) -> None:
        if event.id == "run-1#2":
            raise ConnectionError("down")
        first.append(event.id)

    assert consumer(backend, stuck, pause=Pauses(stop_after=1)).drain() == 5
    assert first == ["run-0#1", "run-0#2", "run-0#3", "run-0#4", "run-1#1"]
    again: list[str] = []
    consumer(backend, lambda event: again.append(event.id)).drain()
    assert again == ["run-1#2", "run-1#3", "run-1#4"]


def test_one_consumer_at_a_time_holds_a_cursor_until_it_lets_go() -> None:
    """A second owner is refused while the first holds a live lease, and claims it once released."""
    backend = backend_with_runs(1)
    holder = consumer(backend, print)
    assert holder.claim()
    other = consumer(backend, print, owner="another")
    assert not other.claim()
    assert other.drain() == 0
    holder.release()
    assert other.claim()


def test_a_lease_that_ran_out_is_taken_over_and_the_old_owner_stops() -> None:
    """After the lease's end another owner claims the cursor; the first one's next save is refused."""
    now = [1_000.0]
    backend = InMemoryBackend(time_source=lambda: now[0])
    app = Conveyor(backend, workflows=[FLOW])
    app.run(FLOW, 1, workflow_id="run-0")
    old = consumer(backend, print)
    assert old.claim()
    now[0] += 31  # past DEFAULT_LEASE_SECONDS
    new = consumer(backend, lambda event: None, owner="new")
    assert new.claim()
    assert old.deliver_page() is None  # its save was refused: it no longer holds the cursor
    assert not old.holds_cursor
    assert backend.load_event_cursor("audit") is None  # nothing the old owner read was saved


def test_a_cursor_held_by_a_dead_process_of_this_machine_is_taken_over_at_once() -> None:
    """Its owner names a process that no longer exists: no waiting for the lease to end."""
    backend = backend_with_runs(1)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"{PROCESS.machine}:{int(done.stdout)}:00000000/1"
    assert backend.claim_event_cursor("audit", owner=dead, lease_seconds=3600).claimed
    seen: list[str] = []
    assert consumer(backend, lambda event: seen.append(event.id)).drain() == 4


def test_start_now_skips_the_history_there_when_first_claimed_and_only_then() -> None:
    """A new cursor with start="now" begins after the existing events; later ones all come, also after a
    restart that found nothing new."""
    backend = InMemoryBackend()
    app = Conveyor(backend, workflows=[FLOW])
    seen: list[str] = []
    assert consumer(backend, seen.append, start="now").drain() == 0  # an empty feed: from its start
    app.run(FLOW, 1, workflow_id="early")
    assert consumer(backend, lambda event: seen.append(event.id), start="now").drain() == 4
    assert seen == ["early#1", "early#2", "early#3", "early#4"]
    late = InMemoryBackend()
    other = Conveyor(late, workflows=[FLOW])
    other.run(FLOW, 1, workflow_id="before")
    fresh: list[str] = []
    assert consumer(late, fresh.append, start="now").drain() == 0
    other.run(FLOW, 1, workflow_id="after")
    assert consumer(late, lambda event: fresh.append(event.id), start="now").drain() == 4
    assert fresh == ["after#1", "after#2", "after#3", "after#4"]


def test_a_handler_that_raises_a_base_exception_is_retried_and_its_consumer_thread_lives_on() -> None:
    """asyncio's CancelledError (a BaseException) once, then SystemExit once: each is that attempt failing,
    the event comes again and every event is delivered; the consumer thread carries on. (The first ended
    the thread for good: nothing more was delivered in that process.)"""
    backend = backend_with_runs(1)
    raised: list[BaseException] = [asyncio.CancelledError("once"), SystemExit(3)]
    got: list[str] = []

    def handler(event: Event) -> None:
        if raised:
            raise raised.pop(0)
        got.append(event.id)

    subscription = DurableSubscription(
        "audit", None, handler, RetryPolicy(max_retries=5, initial_delay_secs=0.01)
    )
    with consumed_in_a_thread(subscription, backend):
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(thread.name == "conveyor-durable-audit" for thread in threading.enumerate())
    assert got == [f"run-0#{seq}" for seq in range(1, 5)]
