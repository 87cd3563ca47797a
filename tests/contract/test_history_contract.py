"""The event history on every backend: each transition recorded with the write that makes it, numbered per
run, read in order; nothing recorded by a write that was refused; the feed in commit order; the switch off."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from conveyor import Conveyor, Flow, RetryPolicy, task
from conveyor.backends.base import Backend
from conveyor.core.history import Event
from conveyor.core.records import Checkpoint, NewRun, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.errors import LeaseLostError

NewRunFactory = Callable[..., NewRun]
HOUR = 3600.0


def kinds(events: Sequence[Event]) -> list[tuple[str, str | None, int | None]]:
    return [(event.kind, event.step, event.attempt) for event in events]


def flaky_then_failing_flow(name: str) -> Any:
    """reserve completes; charge fails once then succeeds; ship fails for good: reserve is undone."""
    calls = {"charge": 0}

    @task(name="reserve")
    def reserve(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @reserve.compensate
    def release(order: dict[str, Any]) -> None:
        return None

    @task(name="charge", retries=RetryPolicy(max_retries=2, initial_delay_secs=0.001))
    def charge(order: dict[str, Any]) -> dict[str, Any]:
        calls["charge"] += 1
        if calls["charge"] == 1:
            raise ConnectionError("gateway timeout")
        return order

    @task(name="ship")
    def ship(order: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no courier")

    return Flow(name, version="1").then(reserve).then(charge).then(ship).build()


def test_a_runs_history_holds_every_transition_in_order_numbered_from_one(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")])
    status = app.run("checkout", {"order": 1}, workflow_id="order-1", correlation_id="req-7")
    assert status.state is RunState.COMPENSATED
    events = app.history("order-1")
    assert kinds(events) == [
        ("run.started", None, None),
        ("step.started", "reserve", 1),
        ("step.completed", "reserve", 1),
        ("step.started", "charge", 1),
        ("step.failed", "charge", 1),
        ("step.retry_scheduled", "charge", 2),
        ("step.started", "charge", 2),
        ("step.completed", "charge", 2),
        ("step.started", "ship", 1),
        ("step.failed", "ship", 1),
        ("run.compensating", None, None),
        ("undo.completed", "reserve", 1),
        ("run.compensated", None, None),
    ]
    assert [event.seq for event in events] == list(range(1, 14))
    assert {event.correlation_id for event in events} == {"req-7"}
    assert {event.workflow_name for event in events} == {"checkout"}
    assert {event.worker for event in events} == {app.owner}
    assert len({event.id for event in events}) == 13
    retryable, final = events[4], events[9]
    assert retryable.data["final"] is False
    assert retryable.error_message == "gateway timeout"
    assert retryable.data["error_type"] == "ConnectionError"
    assert final.data["final"] is True
    assert final.error_message == "no courier"
    assert events[5].data["due_at"] >= events[4].at
    assert events[1].at <= events[2].at
    assert events[2].data["duration_seconds"] >= 0
    assert events[-1].data["duration_seconds"] == pytest.approx(events[-1].at - events[0].at, abs=1.0)
    assert events[-1].data["message"] == "no courier"


def test_history_reads_on_after_a_seq_and_pages_by_limit(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")])
    app.run("checkout", {}, workflow_id="order-1")
    first = app.history("order-1", limit=4)
    rest = app.history("order-1", after_seq=first[-1].seq)
    assert [event.seq for event in first + rest] == list(range(1, 14))


def test_history_of_an_unknown_run_is_run_not_found(backend: Backend) -> None:
    from conveyor.errors import RunNotFoundError

    app = Conveyor(backend)
    with pytest.raises(RunNotFoundError):
        app.history("nope")


def test_a_refused_checkpoint_records_no_event(backend: Backend, new_run: NewRunFactory) -> None:
    backend.submit_run(new_run(), now=backend.now())
    [claimed] = backend.claim_runs(owner="w", limit=1, lease_seconds=HOUR, max_recoveries=5)
    at = backend.now()
    done = StepRecord("a", StepState.COMPLETED, 1, "1", None, None, at, at, 1)
    stale = Checkpoint("run-1", claimed.epoch - 1, (done,), RunState.RUNNING, None, None, None, at)
    with pytest.raises(LeaseLostError):
        backend.record_checkpoint(stale)
    assert kinds(backend.read_history("run-1")) == [("run.started", None, None)]
    backend.record_checkpoint(stale._replace(epoch=claimed.epoch))
    assert kinds(backend.read_history("run-1"))[1:] == [("step.started", "a", 1), ("step.completed", "a", 1)]


def test_steering_signals_and_take_overs_are_recorded(backend: Backend, new_run: NewRunFactory) -> None:
    backend.submit_run(new_run(), now=backend.now())
    backend.claim_runs(owner="w1", limit=1, lease_seconds=0.0, max_recoveries=5)
    time.sleep(0.01)
    [taken] = backend.claim_runs(owner="w2", limit=1, lease_seconds=HOUR, max_recoveries=5)
    backend.send_signal("run-1", "approved", '{"card": "secret"}', now=backend.now())
    backend.request_pause("run-1")
    backend.request_pause("run-1")  # a second pause changes nothing: no second event
    backend.request_resume("run-1")
    backend.request_cancel("run-1", "customer asked")
    events = backend.read_history("run-1")
    assert kinds(events) == [
        ("run.started", None, None),
        ("run.taken_over", None, None),
        ("signal.received", None, None),
        ("run.paused", None, None),
        ("run.resumed", None, None),
        ("run.cancel_requested", None, None),
    ]
    taken_over = events[1]
    assert taken_over.worker == "w2"
    assert taken_over.data["previous_owner"] == "w1"
    assert taken_over.data["recoveries"] == taken.recoveries == 1
    assert events[2].data["name"] == "approved"
    assert "secret" not in repr(events[2].data)
    assert events[5].data["reason"] == "customer asked"
    assert events[5].worker is None


def test_a_run_set_aside_after_too_many_take_overs_records_it(
    backend: Backend, new_run: NewRunFactory
) -> None:
    backend.submit_run(new_run(), now=backend.now())
    backend.claim_runs(owner="w1", limit=1, lease_seconds=0.0, max_recoveries=0)
    time.sleep(0.01)
    assert backend.claim_runs(owner="w2", limit=1, lease_seconds=HOUR, max_recoveries=0) == []
    assert kinds(backend.read_history("run-1"))[-1] == ("run.dead_lettered", None, None)


def read_feed(app: Conveyor, count: int, *, limit: int) -> tuple[list[Event], list[str | None]]:
    """The feed's first ``count`` events, read ``limit`` at a time, and the positions the pages gave.

    PostgreSQL's feed holds events back while any older transaction of the server (another test's, in
    another database) is still in flight, so a page may come back empty for a while: never out of order.
    """
    read: list[Event] = []
    positions: list[str | None] = []
    position = None
    deadline = time.monotonic() + 30
    while len(read) < count and time.monotonic() < deadline:
        page = app.events(after=position, limit=limit)
        assert len(page.events) <= limit
        read.extend(page.events)
        position = page.position
        positions.append(position)
        if not page.events:
            time.sleep(0.05)
    return read, positions


def test_the_feed_holds_every_runs_events_in_commit_order_and_resumes_from_a_position(
    backend: Backend,
) -> None:
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")])
    app.run("checkout", {}, workflow_id="order-1")
    app.run("checkout", {}, workflow_id="order-2")
    expected = [event.id for event in app.history("order-1") + app.history("order-2")]
    read, positions = read_feed(app, len(expected), limit=5)
    assert [event.id for event in read] == expected
    last = positions[-1]
    assert app.events(after=last).events == ()
    assert app.events(after=last).position == last
    app.run("checkout", {}, workflow_id="order-3")
    deadline = time.monotonic() + 30
    while not (more := app.events(after=last)).events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert more.events[0].id == "order-3#1"


def test_listeners_get_the_events_written_and_one_that_raises_changes_nothing(backend: Backend) -> None:
    heard: list[Event] = []

    def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("subscriber bug")

    backend.add_listener(broken)
    backend.add_listener(heard.extend)
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")])
    status = app.run("checkout", {}, workflow_id="order-1")
    assert status.state is RunState.COMPENSATED
    assert [event.id for event in heard] == [event.id for event in app.history("order-1")]
    assert heard == app.history("order-1")


def test_with_history_off_runs_run_the_same_and_record_no_event(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")], history=False)
    status = app.run("checkout", {}, workflow_id="order-1")
    assert status.state is RunState.COMPENSATED
    assert app.history("order-1") == []
    assert app.events().events == ()


def test_a_backend_with_its_history_turned_off_stays_off_under_the_seed_functions(backend: Backend) -> None:
    from conveyor import run_durable_workflow

    backend.records_history = False
    status = run_durable_workflow(flaky_then_failing_flow("checkout"), "order-1", {}, backend)
    assert status.state is RunState.COMPENSATED
    assert backend.records_history is False
    assert backend.read_history("order-1") == []
    assert Conveyor(backend).records_history is False
    assert Conveyor(backend, history=True).records_history is True


def test_a_retry_by_hand_and_an_operator_action_are_recorded(backend: Backend) -> None:
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")])
    app.run("checkout", {}, workflow_id="order-1")
    app.retry("order-1")
    recorded = kinds(app.history("order-1"))
    assert ("run.retried", None, None) in recorded
    retried_at = recorded.index(("run.retried", None, None))
    assert ("step.reset", "ship", None) in recorded[retried_at - 5 : retried_at + 1]
    assert recorded[-1] == ("run.failed", None, None) or recorded[-1] == ("run.compensated", None, None)


def test_a_batch_of_checkpoints_records_each_runs_events_and_none_for_a_refused_one(
    backend: Backend, new_run: NewRunFactory
) -> None:
    heard: list[Event] = []
    backend.add_listener(heard.extend)
    for workflow_id in ("run-1", "run-2", "run-3"):
        backend.submit_run(new_run(workflow_id), now=backend.now())
    claimed = {
        record.workflow_id: record.epoch
        for record in backend.claim_runs(owner="w", limit=3, lease_seconds=HOUR, max_recoveries=5)
    }
    at = backend.now()
    done = StepRecord("a", StepState.COMPLETED, 1, "1", None, None, at, at, 1)
    batch = [
        Checkpoint(workflow_id, claimed[workflow_id], (done,), RunState.RUNNING, None, None, None, at)
        for workflow_id in ("run-1", "run-2")
    ]
    batch.append(Checkpoint("run-3", claimed["run-3"] + 1, (done,), RunState.RUNNING, None, None, None, at))
    assert backend.record_checkpoints(batch) == {"run-3"}
    for workflow_id in ("run-1", "run-2"):
        assert kinds(backend.read_history(workflow_id))[1:] == [
            ("step.started", "a", 1),
            ("step.completed", "a", 1),
        ]
    assert kinds(backend.read_history("run-3")) == [("run.started", None, None)]
    written = [event for event in heard if event.kind.startswith("step.")]
    assert sorted(event.id for event in written) == ["run-1#2", "run-1#3", "run-2#2", "run-2#3"]
    assert {event.worker for event in written} == {"w"}


@pytest.mark.parametrize("count", [1, 3])
def test_with_history_off_checkpoints_are_written_and_fenced_alike(
    backend: Backend, new_run: NewRunFactory, count: int
) -> None:
    """With nothing to record, a backend may write checkpoints by a plainer statement: same effect."""
    backend.records_history = False
    ids = [f"run-{number}" for number in range(count)]
    for workflow_id in ids:
        backend.submit_run(new_run(workflow_id), now=backend.now())
    claimed = {
        record.workflow_id: record.epoch
        for record in backend.claim_runs(owner="w", limit=count, lease_seconds=HOUR, max_recoveries=5)
    }
    at = backend.now()
    done = StepRecord("a", StepState.COMPLETED, 1, "1", None, None, at, at, 1)
    batch = [
        Checkpoint(workflow_id, claimed[workflow_id], (done,), RunState.RUNNING, None, None, None, at)
        for workflow_id in ids
    ]
    fenced = Checkpoint(ids[-1], claimed[ids[-1]] + 1, (done,), RunState.FAILED, None, None, None, at)
    assert backend.record_checkpoints([fenced]) == {ids[-1]}
    assert backend.record_checkpoints(batch) == set()
    for workflow_id in ids:
        record = backend.load_run(workflow_id)
        assert record is not None
        assert record.state is RunState.RUNNING
        assert record.steps["a"].state is StepState.COMPLETED
        assert backend.read_history(workflow_id) == []


def test_pruning_a_finished_run_deletes_its_history_and_leaves_unfinished_runs_history(
    backend: Backend, new_run: NewRunFactory
) -> None:
    app = Conveyor(backend, workflows=[flaky_then_failing_flow("checkout")])
    app.run("checkout", {}, workflow_id="old")
    backend.submit_run(new_run("waiting"), now=backend.now())
    time.sleep(0.02)
    assert app.prune(older_than=0.01) == 1
    assert backend.read_history("old") == []
    assert kinds(backend.read_history("waiting")) == [("run.started", None, None)]
    read, _ = read_feed(app, 1, limit=100)
    assert [event.workflow_id for event in read] == ["waiting"]
