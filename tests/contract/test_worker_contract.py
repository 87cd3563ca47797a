"""The worker half of the backend contract: submit, claim, lease, release, wake, group commit.

Run on every backend (see ``conftest.BACKENDS``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor.backends import Backend
from conveyor.core.records import Checkpoint, NewRun, RunRecord, StepRecord
from conveyor.core.states import FINAL_RUN_STATES, RunState, StepState
from conveyor.errors import LeaseLostError

NewRunFactory = Callable[..., NewRun]

T0 = 1_700_000_000.25
"""When runs are submitted (the caller's clock: only created_at and updated_at carry it)."""
HOUR = 3600.0
"""A lease that cannot run out during a test."""
EXPIRED = 0.0
"""A lease that has run out by the next call: it ends the moment it is granted."""
RECOVERIES = 5


def claim(backend: Backend, owner: str, *, limit: int = 10, lease_seconds: float = HOUR) -> list[RunRecord]:
    """Claim up to ``limit`` runs for ``owner`` with generous recoveries."""
    return backend.claim_runs(
        owner=owner, limit=limit, lease_seconds=lease_seconds, max_recoveries=RECOVERIES
    )


def submit(backend: Backend, new_run: NewRunFactory, *workflow_ids: str) -> None:
    """Submit one new run per id."""
    for workflow_id in workflow_ids:
        _, created = backend.submit_run(new_run(workflow_id), now=T0)
        assert created, workflow_id


def checkpoint(workflow_id: str, epoch: int, *steps: StepRecord, state: RunState) -> Checkpoint:
    """A checkpoint of ``workflow_id`` at ``epoch``."""
    return Checkpoint(
        workflow_id=workflow_id,
        epoch=epoch,
        steps=steps,
        state=state,
        output=None,
        error=None,
        wake_at=None,
        at=T0 + 1,
    )


def write(backend: Backend, workflow_id: str, epoch: int, *steps: StepRecord, state: RunState) -> None:
    """Record a checkpoint for ``workflow_id`` at ``epoch``."""
    backend.record_checkpoint(checkpoint(workflow_id, epoch, *steps, state=state))


def completed(name: str) -> StepRecord:
    """The record of step ``name`` completed at its first attempt (with a result, as every one has)."""
    return StepRecord(name, StepState.COMPLETED, 1, "1")


def must_load(backend: Backend, workflow_id: str) -> RunRecord:
    """Load a run that must exist."""
    record = backend.load_run(workflow_id)
    assert record is not None, f"run {workflow_id!r} is missing"
    return record


def ids(records: list[RunRecord]) -> list[str]:
    """The sorted workflow ids of ``records``."""
    return sorted(record.workflow_id for record in records)


# --- submit_run -----------------------------------------------------------------------------------------


def test_submit_records_a_pending_run_at_epoch_zero(backend: Backend, new_run: NewRunFactory) -> None:
    """A submitted run is created pending, at epoch 0, with no recoveries, every step pending."""
    record, created = backend.submit_run(new_run("run-1"), now=T0)

    assert created is True
    assert (record.state, record.epoch, record.recoveries) == (RunState.PENDING, 0, 0)
    assert (record.created_at, record.updated_at, record.leased_until) == (T0, T0, None)
    assert record.steps == {"a": StepRecord("a"), "b": StepRecord("b"), "c": StepRecord("c")}
    assert must_load(backend, "run-1") == record


def test_submitting_twice_returns_the_same_run(backend: Backend, new_run: NewRunFactory) -> None:
    """A second submit of one workflow_id creates nothing and returns the run as recorded."""
    first, _ = backend.submit_run(new_run("run-1"), now=T0)

    again, created = backend.submit_run(new_run("run-1", steps=("other",)), now=T0 + 5)

    assert created is False
    assert again == first
    assert must_load(backend, "run-1") == first


def test_submitting_the_id_of_an_inline_run_returns_it_unchanged(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Submitting the id of a run started inline returns that run: still running, still epoch 1."""
    started, _ = backend.start_run(new_run("run-1"), owner="inline", now=T0)

    record, created = backend.submit_run(new_run("run-1"), now=T0 + 5)

    assert created is False
    assert (record.state, record.epoch) == (RunState.RUNNING, 1)
    assert record == started


# --- claim_runs -----------------------------------------------------------------------------------------


def test_claim_returns_pending_runs_once_as_running_under_a_lease(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Claimed runs come back running at epoch 1 with a lease; a second claim finds nothing."""
    submit(backend, new_run, "run-1", "run-2", "run-3")

    claimed = claim(backend, "worker-1")

    assert ids(claimed) == ["run-1", "run-2", "run-3"]
    for record in claimed:
        assert (record.state, record.epoch, record.recoveries) == (RunState.RUNNING, 1, 0)
        assert record.leased_until is not None
        assert must_load(backend, record.workflow_id).epoch == 1
    assert claim(backend, "worker-1") == []
    assert claim(backend, "worker-2") == []


def test_claim_takes_at_most_limit_runs(backend: Backend, new_run: NewRunFactory) -> None:
    """With five runs ready, claims of limit 2 take 2, 2, then 1."""
    submit(backend, new_run, *(f"run-{n}" for n in range(5)))

    sizes = [len(claim(backend, "worker-1", limit=2)) for _ in range(4)]

    assert sizes == [2, 2, 1, 0]


def test_lease_is_judged_by_the_backends_clock(backend: Backend, new_run: NewRunFactory) -> None:
    """A claimed run's lease ends lease_seconds after the backend's now() at the time of the claim."""
    submit(backend, new_run, "run-1")

    before = backend.now()
    [record] = claim(backend, "worker-1", lease_seconds=HOUR)
    after = backend.now()

    assert record.leased_until is not None
    assert before + HOUR <= record.leased_until <= after + HOUR


def test_claim_takes_only_runs_of_the_named_workflows(backend: Backend, new_run: NewRunFactory) -> None:
    """claim_runs(workflow_names=...) leaves runs of other workflows for other workers."""
    billing = new_run("bill-1")
    billing.workflow_name = "billing"
    backend.submit_run(billing, now=T0)
    submit(backend, new_run, "order-1")

    claimed = backend.claim_runs(
        owner="worker-1", limit=10, lease_seconds=HOUR, max_recoveries=RECOVERIES, workflow_names={"billing"}
    )

    assert ids(claimed) == ["bill-1"]
    assert ids(claim(backend, "worker-2")) == ["order-1"]


CLAIMERS = 16
RUNS_TO_CLAIM = 2_000
BATCH = 20


def test_concurrent_claimers_claim_every_run_exactly_once(backend: Backend, new_run: NewRunFactory) -> None:
    """16 threads claiming 2,000 submitted runs in batches of 20: every run is claimed exactly once."""
    workflow_ids = [f"run-{n:04d}" for n in range(RUNS_TO_CLAIM)]
    with ThreadPoolExecutor(max_workers=CLAIMERS) as pool:
        chunks = [workflow_ids[n::CLAIMERS] for n in range(CLAIMERS)]
        list(pool.map(lambda chunk: submit(backend, new_run, *chunk), chunks))
    barrier = threading.Barrier(CLAIMERS, timeout=30)

    def claim_until_none_left(worker: int) -> list[str]:
        barrier.wait()
        mine: list[str] = []
        while batch := claim(backend, f"worker-{worker}", limit=BATCH):
            assert len(batch) <= BATCH
            mine.extend(record.workflow_id for record in batch)
        return mine

    with ThreadPoolExecutor(max_workers=CLAIMERS) as pool:
        per_worker = list(pool.map(claim_until_none_left, range(CLAIMERS)))

    claimed = [workflow_id for mine in per_worker for workflow_id in mine]
    assert len(claimed) == RUNS_TO_CLAIM, "some run was claimed twice or never"
    assert sorted(claimed) == workflow_ids
    assert claim(backend, "late-worker") == []
    assert (must_load(backend, "run-0000").epoch, must_load(backend, "run-1999").epoch) == (1, 1)


def test_claimed_run_is_not_claimable_while_its_lease_holds(backend: Backend, new_run: NewRunFactory) -> None:
    """A run claimed for an hour is not handed to another owner, and start_run does not take it over."""
    submit(backend, new_run, "run-1")
    [held] = claim(backend, "worker-1", lease_seconds=HOUR)

    assert claim(backend, "worker-2") == []
    record, created = backend.start_run(new_run("run-1"), owner="inline", now=T0 + 5)
    assert created is False
    assert (record.epoch, record.recoveries) == (held.epoch, 0)
    assert record.leased_until is not None
    assert claim(backend, "worker-2") == []


def test_run_whose_lease_expired_is_recovered_by_another_owner(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Once its lease ran out, another owner claims the run (epoch 2, one recovery); the first is fenced."""
    submit(backend, new_run, "run-1")
    [first] = claim(backend, "worker-1", lease_seconds=EXPIRED)

    [second] = claim(backend, "worker-2", lease_seconds=HOUR)

    assert (first.epoch, first.recoveries) == (1, 0)
    assert (second.workflow_id, second.state, second.epoch, second.recoveries) == (
        "run-1",
        RunState.RUNNING,
        2,
        1,
    )
    with pytest.raises(LeaseLostError):
        write(
            backend,
            "run-1",
            first.epoch,
            StepRecord("a", StepState.COMPLETED, 1, "1"),
            state=RunState.RUNNING,
        )
    write(
        backend, "run-1", second.epoch, StepRecord("b", StepState.COMPLETED, 1, "1"), state=RunState.RUNNING
    )
    loaded = must_load(backend, "run-1")
    assert (loaded.steps["a"].state, loaded.steps["b"].state) == (StepState.PENDING, StepState.COMPLETED)
    assert (loaded.epoch, loaded.recoveries) == (2, 0)  # the recorded step is progress: none in a row


def test_claim_never_returns_a_run_the_claimer_excludes(backend: Backend, new_run: NewRunFactory) -> None:
    """A run in ``exclude`` (one the worker's own driver holds) is not claimed, even once its lease ended,
    and next_wake_at leaves it out; another claimer (excluding nothing) takes it."""
    submit(backend, new_run, "run-1")
    [mine] = claim(backend, "worker-1", lease_seconds=EXPIRED)

    again = backend.claim_runs(
        owner="worker-1", limit=10, lease_seconds=HOUR, max_recoveries=RECOVERIES, exclude={mine.workflow_id}
    )
    assert again == []
    assert backend.next_wake_at(exclude={mine.workflow_id}) is None
    assert backend.next_wake_at() is not None
    [taken] = claim(backend, "worker-2")
    assert (taken.workflow_id, taken.epoch, taken.recoveries) == (mine.workflow_id, 2, 1)


def test_next_wake_at_leaves_out_workflows_the_worker_does_not_run(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A run of a workflow the asker cannot claim does not make it wake (nor spin on a past due time)."""
    submit(backend, new_run, "run-1")
    [held] = claim(backend, "worker-1", lease_seconds=EXPIRED)
    assert backend.next_wake_at(workflow_names={"some-other-workflow"}) is None
    assert backend.next_wake_at(workflow_names={held.workflow_name}) is not None


def test_inline_run_is_never_claimed_by_workers(backend: Backend, new_run: NewRunFactory) -> None:
    """Runs started inline (running or pending) are held by their caller: no worker claims them."""
    backend.start_run(new_run("inline-running"), owner="inline", now=T0)
    pending = new_run("inline-pending")
    pending.state = RunState.PENDING
    backend.start_run(pending, owner="inline", now=T0)

    assert claim(backend, "worker-1", lease_seconds=EXPIRED) == []
    assert claim(backend, "worker-2") == []
    assert must_load(backend, "inline-running").epoch == 1
    assert must_load(backend, "inline-pending").state is RunState.PENDING


def test_runs_in_final_states_are_never_claimed(backend: Backend, new_run: NewRunFactory) -> None:
    """A run that ended (each final state), then released by its owner, is never claimed."""
    final_states = sorted(FINAL_RUN_STATES)
    for state in final_states:
        backend.start_run(new_run(f"run-{state}"), owner="inline", now=T0)
        write(backend, f"run-{state}", 1, state=state)
        assert backend.release_run(workflow_id=f"run-{state}", epoch=1, wake_at=None) is True
    submit(backend, new_run, "ready")

    assert ids(claim(backend, "worker-1", limit=100)) == ["ready"]
    assert [must_load(backend, f"run-{state}").state for state in final_states] == final_states


def test_run_past_max_recoveries_is_dead_lettered_with_its_failure(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """After its workers died twice with max_recoveries=1, the run is dead-lettered, not claimed again."""
    submit(backend, new_run, "run-1")
    [first] = backend.claim_runs(owner="worker-1", limit=1, lease_seconds=EXPIRED, max_recoveries=1)
    write(backend, "run-1", first.epoch, completed("a"), state=RunState.RUNNING)
    [second] = backend.claim_runs(owner="worker-2", limit=1, lease_seconds=EXPIRED, max_recoveries=1)
    assert second.recoveries == 1

    claimed = backend.claim_runs(owner="worker-3", limit=1, lease_seconds=HOUR, max_recoveries=1)

    assert claimed == []
    loaded = must_load(backend, "run-1")
    assert loaded.state is RunState.DEAD_LETTERED
    assert loaded.error is not None
    assert (loaded.error.step_name, loaded.error.error_type) == ("b", "DeadLettered")
    assert "died 2 times" in loaded.error.message
    assert loaded.steps["a"].state is StepState.COMPLETED
    with pytest.raises(LeaseLostError):
        write(backend, "run-1", second.epoch, state=RunState.COMPLETED)
    assert claim(backend, "worker-4") == []


# --- extend_leases --------------------------------------------------------------------------------------


def test_extend_leases_keeps_held_leases_and_reports_lost_ones(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Extending renews every lease still held (an expired one too) and names the runs taken over."""
    submit(backend, new_run, "lost")
    [lost] = claim(backend, "worker-1", lease_seconds=EXPIRED)
    [taken] = claim(backend, "worker-2", lease_seconds=HOUR)
    submit(backend, new_run, "kept")
    [kept] = claim(backend, "worker-1", lease_seconds=HOUR)
    submit(backend, new_run, "expired")
    [expired] = claim(backend, "worker-1", lease_seconds=EXPIRED)
    assert (taken.workflow_id, kept.workflow_id, expired.workflow_id) == ("lost", "kept", "expired")

    leases = {"kept": kept.epoch, "expired": expired.epoch, "lost": lost.epoch, "never-claimed": 1}
    gone = backend.extend_leases(owner="worker-1", leases=leases, lease_seconds=HOUR)

    assert gone == {"lost", "never-claimed"}
    assert claim(backend, "worker-3", lease_seconds=HOUR) == []  # "expired" is held for an hour again
    assert must_load(backend, "lost").epoch == taken.epoch


def test_extend_leases_with_nothing_held_returns_nothing(backend: Backend) -> None:
    """Extending an empty set of leases loses nothing."""
    assert backend.extend_leases(owner="worker-1", leases={}, lease_seconds=HOUR) == set()


def test_extend_leases_refuses_another_owner_or_an_old_epoch(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A lease is renewed only for its owner at the epoch it was claimed with."""
    submit(backend, new_run, "run-1")
    [held] = claim(backend, "worker-1", lease_seconds=EXPIRED)

    by_another = backend.extend_leases(owner="worker-2", leases={"run-1": held.epoch}, lease_seconds=HOUR)
    too_old = backend.extend_leases(owner="worker-1", leases={"run-1": held.epoch - 1}, lease_seconds=HOUR)

    assert (by_another, too_old) == ({"run-1"}, {"run-1"})
    assert ids(claim(backend, "worker-2")) == ["run-1"]


# --- release_run and next_wake_at -----------------------------------------------------------------------


def test_release_with_a_future_wake_at_hides_the_run_until_then(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A run released to wake in an hour is not claimable, and next_wake_at reports when it wakes."""
    submit(backend, new_run, "run-1")
    [held] = claim(backend, "worker-1")
    lease_end = backend.next_wake_at()  # while held, the run may become claimable when its lease ends
    assert lease_end is not None
    assert backend.now() + HOUR - 60 < lease_end <= backend.now() + HOUR
    wake_at = backend.now() + 2 * HOUR

    assert backend.release_run(workflow_id="run-1", epoch=held.epoch, wake_at=wake_at) is True

    assert claim(backend, "worker-2") == []
    assert backend.next_wake_at() == wake_at
    assert must_load(backend, "run-1").wake_at == wake_at


def test_release_with_a_past_wake_at_makes_the_run_claimable_again(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A run released with a due wake_at is claimed again, as a hand-back and not as a recovery."""
    submit(backend, new_run, "run-1")
    [held] = claim(backend, "worker-1")

    assert backend.release_run(workflow_id="run-1", epoch=held.epoch, wake_at=backend.now() - 1) is True

    [again] = claim(backend, "worker-2")
    assert (again.workflow_id, again.epoch, again.recoveries) == ("run-1", 2, 0)


def test_release_without_wake_at_makes_the_run_claimable_at_once(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """wake_at=None means now: the released run is claimable straight away."""
    submit(backend, new_run, "run-1")
    [held] = claim(backend, "worker-1")

    assert backend.release_run(workflow_id="run-1", epoch=held.epoch, wake_at=None) is True

    assert ids(claim(backend, "worker-2")) == ["run-1"]


def test_release_with_a_stale_epoch_returns_false_and_changes_nothing(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """After a take-over, the old owner's release is refused and the new owner keeps the run."""
    submit(backend, new_run, "run-1")
    [first] = claim(backend, "worker-1", lease_seconds=EXPIRED)
    [second] = claim(backend, "worker-2", lease_seconds=HOUR)

    assert backend.release_run(workflow_id="run-1", epoch=first.epoch, wake_at=None) is False

    assert claim(backend, "worker-3") == []
    assert must_load(backend, "run-1").epoch == second.epoch
    assert backend.release_run(workflow_id="ghost", epoch=1, wake_at=None) is False


def test_next_wake_at_ignores_runs_held_inline(backend: Backend, new_run: NewRunFactory) -> None:
    """A wake_at written by an inline caller is that caller's timer, not one for workers."""
    backend.start_run(new_run("run-1"), owner="inline", now=T0)
    backend.record_checkpoint(
        Checkpoint(
            workflow_id="run-1",
            epoch=1,
            steps=(),
            state=RunState.RUNNING,
            output=None,
            error=None,
            wake_at=T0 + 60,
            at=T0 + 1,
        )
    )

    assert backend.next_wake_at() is None


# --- record_checkpoints (group commit) -----------------------------------------------------------------


def test_record_checkpoints_writes_each_run_and_returns_the_refused_ids(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """One call writes several runs' checkpoints; one whose epoch moved on is refused and writes nothing."""
    for workflow_id in ("run-1", "run-2", "run-3"):
        backend.start_run(new_run(workflow_id), owner="inline", now=T0)
    backend.start_run(new_run("run-2"), owner="other", now=T0)  # run-2 taken over: now at epoch 2
    done = StepRecord("a", StepState.COMPLETED, attempts=1, result='"ok"', completion_order=1)

    refused = backend.record_checkpoints(
        [
            checkpoint("run-3", 1, done, state=RunState.COMPLETED),
            checkpoint("run-2", 1, done, state=RunState.COMPLETED),
            checkpoint("run-1", 1, done, state=RunState.RUNNING),
        ]
    )

    assert refused == {"run-2"}
    first, second, third = (must_load(backend, f"run-{n}") for n in (1, 2, 3))
    assert (first.state, first.steps["a"]) == (RunState.RUNNING, done)
    assert (second.state, second.steps["a"], second.epoch) == (RunState.RUNNING, StepRecord("a"), 2)
    assert (third.state, third.steps["a"]) == (RunState.COMPLETED, done)


def test_record_checkpoints_of_nothing_refuses_nothing(backend: Backend) -> None:
    """An empty batch writes nothing and refuses nothing."""
    assert backend.record_checkpoints([]) == set()


# --- wait_for_work --------------------------------------------------------------------------------------


def test_wait_for_work_returns_false_after_its_timeout(backend: Backend) -> None:
    """With nothing happening, wait_for_work(0.1) returns False once the 0.1 s are up."""
    started = time.monotonic()

    woken = backend.wait_for_work(0.1)

    elapsed = time.monotonic() - started
    assert woken is False
    assert 0.09 <= elapsed < 5


def test_wait_for_work_returns_true_promptly_after_a_submit_from_another_thread(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A waiting caller wakes (True) within moments of another thread submitting a run."""
    woken = threading.Event()

    def submit_until_woken() -> None:
        # Submits keep coming until the waiter wakes, so one surely lands while it waits.
        for n in range(100_000):
            if woken.is_set():
                return
            backend.submit_run(new_run(f"run-{n}"), now=T0)

    submitter = threading.Thread(target=submit_until_woken)
    started = time.monotonic()
    submitter.start()
    try:
        result = backend.wait_for_work(10)
    finally:
        woken.set()
        submitter.join(timeout=30)

    assert result is True
    assert time.monotonic() - started < 5


def test_a_worker_restarted_under_its_name_takes_back_its_runs_at_once(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """reclaim_own: runs leased to the same owner are claimed again, as a recovery; others' are not."""
    submit(backend, new_run, "mine")
    submit(backend, new_run, "theirs")
    [mine] = backend.claim_runs(owner="host:slot-1", limit=1, lease_seconds=HOUR, max_recoveries=RECOVERIES)
    backend.claim_runs(owner="host:slot-2", limit=1, lease_seconds=HOUR, max_recoveries=RECOVERIES)
    assert claim(backend, "host:slot-1") == []  # without reclaim_own, a live lease holds
    [again] = backend.claim_runs(
        owner="host:slot-1", limit=10, lease_seconds=HOUR, max_recoveries=RECOVERIES, reclaim_own=True
    )
    assert again.workflow_id == mine.workflow_id
    assert again.epoch == mine.epoch + 1
    assert again.recoveries == 1
