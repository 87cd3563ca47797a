"""Pruning finished runs by age, on every backend: old finished runs go with all they hold; runs that have
not finished, runs finished recently and finished children of unfinished parents stay."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    FakeClock,
    Flow,
    InvalidArgumentError,
    NonRetryableError,
    RunNotFoundError,
    RunState,
    task,
)
from conveyor.backends import Backend
from conveyor.core.records import Checkpoint, NewRun

T0 = 1_700_000_000.0
DAY = 86400.0


@task
def pack(order: dict[str, Any]) -> dict[str, Any]:
    return order


@task
def refuse(order: dict[str, Any]) -> dict[str, Any]:
    raise NonRetryableError("refused")


PACKING = Flow("packing").then(pack).build()
REFUSING = Flow("refusing").then(refuse).build()
APPROVAL = Flow("approval").wait_for_signal("approved").then(pack).build()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(backend: Backend, clock: FakeClock) -> Conveyor:
    return Conveyor(backend, workflows=[PACKING, REFUSING, APPROVAL], clock=clock)


def finish_child(backend: Backend, child: str, parent: str, at: float) -> None:
    """Record ``child`` as a child run of ``parent`` (of a workflow no runtime here knows) and complete it at
    ``at``, as a worker would."""
    backend.submit_run(NewRun(child, "kid", "1", "{}", f"corr-{child}", ("pack",), parent_id=parent), now=at)
    (claimed,) = backend.claim_runs(
        owner="w", limit=1, lease_seconds=60, max_recoveries=5, workflow_names={"kid"}
    )
    backend.record_checkpoint(Checkpoint(child, claimed.epoch, (), RunState.COMPLETED, "{}", None, None, at))


def exists(app: Conveyor, workflow_id: str) -> bool:
    try:
        app.status(workflow_id)
    except RunNotFoundError:
        return False
    return True


def test_prune_deletes_old_finished_runs_and_keeps_unfinished_and_recent_ones(
    app: Conveyor, backend: Backend, clock: FakeClock
) -> None:
    """Completed and failed runs 40 days old go; a pending run as old, a run 10 days old, a run waiting for
    a signal and a finished child of an unfinished parent stay."""
    for number in range(3):
        app.run(PACKING, {"n": number}, workflow_id=f"old-{number}")
    app.run(REFUSING, {}, workflow_id="old-failed")
    app.start(PACKING, {}, workflow_id="old-pending")
    app.start(PACKING, {}, workflow_id="parent")  # never driven: unfinished
    finish_child(backend, "child-of-unfinished", "parent", clock.now())
    app.start(APPROVAL, {}, workflow_id="old-waiting")
    clock.advance(30 * DAY)
    app.run(PACKING, {}, workflow_id="recent")
    clock.advance(10 * DAY)

    assert app.prune(older_than="30d") == 4

    for gone in ("old-0", "old-1", "old-2", "old-failed"):
        assert not exists(app, gone), gone
    assert app.status("old-pending").state is RunState.PENDING
    assert app.status("parent").state is RunState.PENDING
    assert app.status("child-of-unfinished").state is RunState.COMPLETED
    assert app.status("old-waiting").state is RunState.PENDING
    assert app.status("recent").is_completed()
    assert app.prune(older_than="30d") == 0
    assert app.prune(older_than=dt.timedelta(days=5)) == 1  # recent, now 10 days old
    assert app.status("child-of-unfinished").state is RunState.COMPLETED


def test_a_pruned_runs_signals_go_and_an_unfinished_runs_stay(app: Conveyor, clock: FakeClock) -> None:
    """A pruned run's consumed signal goes with it; one sent to a waiting run stays, and is still consumed."""
    app.start(APPROVAL, {}, workflow_id="approved-early")
    app.send_signal("approved-early", "approved", {"by": "ada"})
    assert app.run(APPROVAL, {}, workflow_id="approved-early").is_completed()
    app.start(APPROVAL, {}, workflow_id="waiting")
    app.send_signal("waiting", "approved", {"by": "bob"})
    clock.advance(31 * DAY)
    assert app.prune(older_than="30d") == 1
    assert not exists(app, "approved-early")
    assert app.run(APPROVAL, {}, workflow_id="waiting").is_completed()  # its signal was kept


def test_prune_works_in_batches_and_reports_progress(app: Conveyor, clock: FakeClock) -> None:
    """Five old runs with batches of two: three transactions, progress after each."""
    for number in range(5):
        app.run(PACKING, {}, workflow_id=f"r{number}")
    clock.advance(2 * DAY)
    seen: list[int] = []
    assert app.prune(older_than="1d", batch_size=2, on_progress=seen.append) == 5
    assert seen == [2, 4, 5]


def test_a_child_goes_once_its_parent_has_finished(app: Conveyor, backend: Backend, clock: FakeClock) -> None:
    """A finished child of a finished parent is pruned like any other run."""
    app.run(PACKING, {}, workflow_id="parent")
    finish_child(backend, "child", "parent", clock.now())
    clock.advance(40 * DAY)
    assert app.prune(older_than="30d") == 2


def test_pruned_runs_leave_the_analytics(app: Conveyor, clock: FakeClock) -> None:
    """The figures count what is left: runs pruned are no longer in any window."""
    app.run(PACKING, {}, workflow_id="old")
    clock.advance(40 * DAY)
    app.run(PACKING, {}, workflow_id="new")
    clock.advance(1)
    assert app.performance(since=T0 - 1).finished == 2
    app.prune(older_than="30d")
    assert app.performance(since=T0 - 1).finished == 1
    (step,) = app.bottlenecks(since=T0 - 1).steps
    assert step.executions == 1


@pytest.mark.parametrize(
    ("older_than", "named"),
    [
        ("30", "older_than"),
        ("soon", "older_than"),
        (0, "positive"),
        (-5.0, "older_than"),
        (None, "older_than"),
    ],
)
def test_an_age_that_is_not_one_is_refused(app: Conveyor, older_than: Any, named: str) -> None:
    """older_than must be a positive duration: a timedelta, seconds, or text such as '30d'."""
    with pytest.raises(InvalidArgumentError, match=named):
        app.prune(older_than=older_than)


def test_a_batch_size_out_of_range_is_refused(app: Conveyor) -> None:
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        app.prune(older_than="1d", batch_size=0)
