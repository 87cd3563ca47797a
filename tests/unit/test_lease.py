"""A lease has one owner: the heartbeat marks a lease lost when the backend says the run was taken, and
the driver that shares the lease then starts no step and writes no checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import FakeClock, Flow, InMemoryBackend, StepState, task
from conveyor.core.records import NewRun
from conveyor.engine.driver import RunDriver
from conveyor.engine.lease import Heartbeat, Lease
from conveyor.errors import BackendError, LeaseLostError

HOUR = 3600.0
PAIR_RUN = NewRun(
    workflow_id="run-1",
    workflow_name="pair",
    workflow_version="1",
    input="1",
    correlation_id="",
    step_names=("first", "second"),
)


def held_run(backend: InMemoryBackend, owner: str = "me") -> Any:
    """A two-step run started in process by ``owner`` under an hour's lease; its record."""
    record, created = backend.start_run(PAIR_RUN, owner=owner, now=backend.now(), lease_seconds=HOUR)
    assert created
    return record


class CountingRenewals(InMemoryBackend):
    """A memory backend that records the leases each renewal asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[dict[str, int]] = []

    def extend_leases(self, **arguments: Any) -> set[str]:
        self.renewals.append(dict(arguments["leases"]))
        return super().extend_leases(**arguments)


def test_a_renewal_the_backend_refuses_marks_the_lease_lost_and_stops_renewing_it() -> None:
    """Another owner took the run: the next round marks the lease lost; it stays held (its driver has not
    let go yet, so its slot stays busy) but is never renewed again."""
    backend = CountingRenewals()
    record = held_run(backend)
    lease = Lease(record.workflow_id, record.epoch, "me")
    heartbeat = Heartbeat(lambda: backend, "me", HOUR)
    heartbeat.hold(lease)
    backend.start_run(
        PAIR_RUN,
        owner="other",
        now=backend.now(),
        lease_seconds=HOUR,
        take_over_from="me",
    )

    heartbeat.renew_now()
    assert lease.lost
    assert heartbeat.held() == {"run-1": lease}

    heartbeat.renew_now()
    assert backend.renewals == [{"run-1": record.epoch}]
    heartbeat.drop(lease)
    assert heartbeat.held() == {}
    heartbeat.close()


class Unreachable(InMemoryBackend):
    """A memory backend whose lease renewals cannot reach it."""

    def extend_leases(self, **arguments: Any) -> set[str]:
        raise BackendError("the connection was lost")


def test_a_renewal_that_cannot_reach_the_backend_marks_nothing_lost() -> None:
    """Only the backend knows whether the run was taken: a failed round keeps the lease, held and not lost."""
    backend = Unreachable()
    record = held_run(backend)
    lease = Lease(record.workflow_id, record.epoch, "me")
    heartbeat = Heartbeat(lambda: backend, "me", HOUR)
    heartbeat.hold(lease)

    heartbeat.renew_now()

    assert not lease.lost
    assert list(heartbeat.held()) == ["run-1"]
    heartbeat.close()


def test_dropping_an_old_lease_keeps_a_newer_one_on_the_same_run() -> None:
    """drop() removes that lease only: a newer lease held since on the run stays renewed."""
    heartbeat = Heartbeat(lambda: InMemoryBackend(), "me", HOUR)
    old, new = Lease("run-1", 1, "me"), Lease("run-1", 2, "me")
    heartbeat.hold(old)
    heartbeat.hold(new)
    heartbeat.drop(old)
    assert heartbeat.held() == {"run-1": new}
    heartbeat.close()


def test_a_driver_whose_lease_is_lost_mid_step_writes_nothing_and_starts_no_further_step() -> None:
    """The lease is marked lost while step one runs: its result is not checkpointed, step two never runs."""
    backend = InMemoryBackend()
    record = held_run(backend)
    lease = Lease(record.workflow_id, record.epoch, "me")
    ran: list[str] = []

    @task
    def first(value: int) -> int:
        ran.append("first")
        lease.mark_lost()  # as the heartbeat does when a renewal is refused
        return value + 1

    @task
    def second(value: int) -> int:
        ran.append("second")
        return value * 2

    workflow = Flow("pair").then(first).then(second).build()
    driver = RunDriver(workflow, record, backend, FakeClock(), lease=lease)
    with pytest.raises(LeaseLostError, match="run-1"):
        driver.drive()
    assert ran == ["first"]
    stored = backend.load_run("run-1")
    assert stored is not None
    assert stored.steps["first"].state is StepState.PENDING


def test_a_driver_whose_lease_was_lost_before_it_started_runs_nothing() -> None:
    """A lease already lost: the drive stops before its first step."""
    backend = InMemoryBackend()
    record = held_run(backend)
    lease = Lease(record.workflow_id, record.epoch, "me")
    lease.mark_lost()
    ran: list[str] = []

    @task
    def first(value: int) -> int:
        ran.append("first")
        return value

    @task
    def second(value: int) -> int:
        ran.append("second")
        return value

    workflow = Flow("pair").then(first).then(second).build()
    with pytest.raises(LeaseLostError):
        RunDriver(workflow, record, backend, FakeClock(), lease=lease).drive()
    assert ran == []
