"""In-process subscribers: kinds checked when registered, aliases, every kind, class-based subscribers, and
handlers that fail or are slow never touching a run."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from conveyor import (
    ConfigurationError,
    Conveyor,
    Event,
    Flow,
    InMemoryBackend,
    InvalidArgumentError,
    RetryPolicy,
    RunState,
    task,
)
from conveyor.runtime.subscribers import LocalDispatcher, LocalSubscriptions, Subscription


@task
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return order


@task
def charge(order: dict[str, Any]) -> dict[str, Any]:
    if order.get("declined"):
        raise ValueError("card declined")
    return order


CHECKOUT = Flow("checkout", version="1").then(reserve).then(charge).build()


def runtime() -> Conveyor:
    return Conveyor(InMemoryBackend(), workflows=[CHECKOUT])


def test_a_function_gets_the_events_of_its_kinds_in_commit_order() -> None:
    """Only the kinds asked for, each event once, in the order they were written."""
    app = runtime()
    seen: list[tuple[str, str | None]] = []

    @app.on("step.completed", "run.completed")
    def record(event: Event) -> None:
        seen.append((event.kind, event.step))

    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    assert app.flush_subscribers()
    assert seen == [("step.completed", "reserve"), ("step.completed", "charge"), ("run.completed", None)]


def test_seed_002s_names_are_aliases_of_the_kinds_they_spell() -> None:
    """ "task.completed" is run.completed; "step.failed" is itself; the event says its canonical kind."""
    app = runtime()
    seen: list[str] = []
    app.subscribe(lambda event: seen.append(event.kind), "task.completed", "step.failed")
    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    app.run(CHECKOUT, {"declined": True}, workflow_id="order-2")
    app.flush_subscribers()
    assert seen == ["run.completed", "step.failed"]


def test_the_star_takes_every_kind() -> None:
    """ "*" gets the run's whole history, as app.history reads it."""
    app = runtime()
    seen: list[str] = []
    app.subscribe(lambda event: seen.append(event.id), "*")
    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    app.flush_subscribers()
    assert seen == [event.id for event in app.history("order-1")]


def test_an_unknown_kind_is_refused_when_registered_naming_the_kinds() -> None:
    """A typo is an error at registration, listing the kinds there are; no kind at all is one too."""
    app = runtime()
    with pytest.raises(InvalidArgumentError, match=r"unknown event kind 'step.faild'.*step\.failed"):
        app.on("step.faild")
    with pytest.raises(InvalidArgumentError, match="at least one event kind"):
        app.on()


def test_a_failing_handler_is_logged_with_the_event_id_and_the_others_still_get_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The exception is logged (with the event's id); the run completes; the next handler is called."""
    app = runtime()
    after: list[str] = []

    @app.on("run.completed")
    def broken(event: Event) -> None:
        raise RuntimeError("the dashboard is down")

    app.subscribe(lambda event: after.append(event.id), "run.completed")
    with caplog.at_level(logging.ERROR, logger="conveyor.subscribers"):
        status = app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
        app.flush_subscribers()
    assert status.state is RunState.COMPLETED
    assert after == ["order-1#6"]
    [record] = [r for r in caplog.records if "broken" in r.getMessage()]
    assert "order-1#6 (run.completed)" in record.getMessage()
    assert "the dashboard is down" in caplog.text


def test_a_slow_handler_never_holds_up_a_run() -> None:
    """Handlers run on the runtime's own thread: a run finishes while its first event's handler waits."""
    app = runtime()
    release = threading.Event()
    handled: list[str] = []

    @app.on("run.started")
    def slow(event: Event) -> None:
        release.wait(10)
        handled.append(event.id)

    status = app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    assert status.state is RunState.COMPLETED
    assert handled == []  # still waiting, and the run is done
    release.set()
    assert app.flush_subscribers(5)
    assert handled == ["order-1#1"]


def test_closing_the_runtime_delivers_what_is_queued() -> None:
    """close() waits for the handlers to take the events already committed."""
    app = runtime()
    seen: list[str] = []
    app.subscribe(lambda event: seen.append(event.kind), "run.completed")
    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    app.close()
    assert seen == ["run.completed"]


def test_closing_waits_at_most_its_timeout_for_a_handler_that_never_returns() -> None:
    """A handler stuck for good: closing the in-process delivery gives up after its timeout, once (it
    waited the timeout for the queue, then as long again for the thread: app.close() took 10 s, not 5)."""
    app = runtime()
    stuck = threading.Event()

    @app.on("run.started")
    def hangs(event: Event) -> None:
        stuck.wait(30)

    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    began = time.monotonic()
    app.subscriptions.in_process.close(timeout_seconds=1.0)
    took = time.monotonic() - began
    stuck.set()
    assert took < 1.7, f"closing took {took:.2f} s"


class CheckoutMonitor:
    subscribe_to = ("step.failed", "task.completed")

    def __init__(self) -> None:
        self.failures: list[str | None] = []
        self.completed: list[float] = []

    def handle_step_failed(self, event: Event) -> None:
        self.failures.append(event.error_message)

    def handle_task_completed(self, event: Event) -> None:
        self.completed.append(event.data["duration_seconds"])


def test_a_class_based_subscriber_takes_each_kind_by_its_handle_method() -> None:
    """Seed 002's spelling: subscribe_to names the kinds, handle_<name as written> takes each."""
    app = runtime()
    monitor = CheckoutMonitor()
    app.subscribe(monitor)
    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    app.run(CHECKOUT, {"declined": True}, workflow_id="order-2")
    app.flush_subscribers()
    assert monitor.failures == ["card declined"]
    assert len(monitor.completed) == 1
    assert monitor.completed[0] >= 0


def test_an_alias_is_taken_by_the_canonical_method_when_there_is_no_method_of_its_spelling() -> None:
    """ "task.completed" falls back to handle_run_completed."""

    class Canonical:
        subscribe_to = ("task.completed",)

        def __init__(self) -> None:
            self.seen: list[str] = []

        def handle_run_completed(self, event: Event) -> None:
            self.seen.append(event.kind)

    app = runtime()
    subscriber = Canonical()
    app.subscribe(subscriber)
    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    app.flush_subscribers()
    assert subscriber.seen == ["run.completed"]


def test_without_subscribe_to_the_handle_methods_say_the_kinds() -> None:
    """Every handle_<kind> method subscribes to its kind."""

    class Methods:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def handle_run_started(self, event: Event) -> None:
            self.seen.append(event.kind)

        def handle_step_completed(self, event: Event) -> None:
            self.seen.append(event.kind)

    app = runtime()
    subscriber = Methods()
    app.subscribe(subscriber)
    app.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    app.flush_subscribers()
    assert subscriber.seen == ["run.started", "step.completed", "step.completed"]


def test_a_class_subscriber_missing_a_method_is_refused_naming_it() -> None:
    """A kind in subscribe_to that no method takes is a ConfigurationError naming both spellings."""

    class Missing:
        subscribe_to = ("task.completed",)

    with pytest.raises(ConfigurationError, match="handle_task_completed or handle_run_completed"):
        runtime().subscribe(Missing())
    with pytest.raises(ConfigurationError, match="neither subscribe_to nor any handle_"):
        runtime().subscribe(object())


def test_async_handlers_and_durable_options_in_process_are_refused() -> None:
    """An async function, or retry/start without a durable name, is an error at registration."""
    app = runtime()

    async def handler(event: Event) -> None:
        return None

    with pytest.raises(InvalidArgumentError, match="is async"):
        app.subscribe(handler, "run.completed")
    with pytest.raises(InvalidArgumentError, match="for durable subscribers"):
        app.subscribe(print, "run.completed", retry=RetryPolicy(max_retries=1))
    with pytest.raises(InvalidArgumentError, match="must be callable"):
        app.subscribe("print", "run.completed")


def test_a_runtime_without_history_refuses_subscribers() -> None:
    """history=False records nothing, so there is nothing to subscribe to."""
    app = Conveyor(InMemoryBackend(), history=False)
    with pytest.raises(ConfigurationError, match="records no history"):
        app.on("run.completed")


def test_a_runtime_on_another_backend_keeps_the_subscribers() -> None:
    """using() (what the CLI's --backend does) carries the subscribers over."""
    app = runtime()
    seen: list[str] = []
    app.subscribe(lambda event: seen.append(event.id), "run.completed")
    other = app.using(InMemoryBackend())
    other.run(CHECKOUT, {"id": 1}, workflow_id="order-1")
    other.flush_subscribers()
    assert seen == ["order-1#6"]


def test_no_listener_is_put_on_the_backend_until_something_subscribes() -> None:
    """Writes build no events for listeners while nobody subscribes (no cost)."""
    backend = InMemoryBackend()
    app = Conveyor(backend, workflows=[CHECKOUT])
    assert not backend.wants_events
    app.on("run.completed")(print)
    assert backend.wants_events
    app.close()
    assert not backend.wants_events


def test_events_past_the_queue_limit_are_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that falls far behind never grows the queue past its limit: the excess is dropped."""
    release = threading.Event()
    seen: list[int] = []

    def slow(event: Event) -> None:
        release.wait(10)
        seen.append(event.seq)

    dispatcher = LocalDispatcher(LocalSubscriptions([Subscription(None, slow, "slow")]), max_pending=3)
    events = [Event("run", seq, "step.started", 0.0, "w", "c") for seq in range(1, 7)]
    with caplog.at_level(logging.WARNING, logger="conveyor.subscribers"):
        dispatcher.listener(events[:1])  # taken by the thread at once (it then waits)
        assert not dispatcher.flush(0.05)
        dispatcher.listener(events[1:])
    release.set()
    assert dispatcher.flush(5)
    assert seen == [1, 2, 3, 4]
    assert dispatcher.dropped == 2
    assert "dropped" in caplog.text
    dispatcher.close()
