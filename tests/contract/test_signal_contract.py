"""The signals half of the backend contract, on every backend: kept, read oldest first, consumed with the
checkpoint that takes them (both or neither), and never slept through by a run being handed back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from conveyor.backends.base import Backend
from conveyor.core.records import Checkpoint, NewRun, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.core.waits import WAIT_FOREVER
from conveyor.errors import LeaseLostError, RunFinishedError, RunNotFoundError

NewRunFactory = Callable[..., NewRun]


def claim_one(backend: Backend) -> int:
    """Claim the one ready run; its epoch."""
    claimed = backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)
    assert len(claimed) == 1
    return claimed[0].epoch


def completing(epoch: int, at: float, *, state: RunState = RunState.RUNNING) -> Checkpoint:
    """The checkpoint of step 'a' completing with result 1."""
    record = StepRecord("a", StepState.COMPLETED, 1, "1", None, None, at, at, 1)
    return Checkpoint("run-1", epoch, (record,), state, None, None, None, at)


def test_signals_are_kept_and_read_oldest_first_of_the_names_asked_for(
    backend: Backend, new_run: NewRunFactory
) -> None:
    backend.submit_run(new_run(), now=backend.now())
    first = backend.send_signal("run-1", "approved", '{"n":1}', now=backend.now())
    backend.send_signal("run-1", "other", "2", now=backend.now())
    backend.send_signal("run-1", "approved", '{"n":3}', now=backend.now())
    found = backend.next_signal("run-1", ["approved"])
    assert found is not None
    assert (found.signal_id, found.name, found.payload) == (first, "approved", '{"n":1}')
    assert backend.next_signal("run-1", ["missing"]) is None
    assert backend.next_signal("run-2", ["approved"]) is None


def test_consuming_a_signal_is_written_with_the_checkpoint_and_the_next_is_read_after(
    backend: Backend, new_run: NewRunFactory
) -> None:
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    first = backend.send_signal("run-1", "tick", "1", now=backend.now())
    second = backend.send_signal("run-1", "tick", "2", now=backend.now())
    backend.record_checkpoint_consuming(completing(epoch, backend.now()), first)
    record = backend.load_run("run-1")
    assert record is not None
    assert record.steps["a"].state is StepState.COMPLETED
    found = backend.next_signal("run-1", ["tick"])
    assert found is not None
    assert found.signal_id == second


def test_a_fenced_out_checkpoint_consumes_nothing(backend: Backend, new_run: NewRunFactory) -> None:
    """The write that consumes a signal is refused as a whole when the run was taken over."""
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    signal_id = backend.send_signal("run-1", "tick", "1", now=backend.now())
    with pytest.raises(LeaseLostError):
        backend.record_checkpoint_consuming(completing(epoch + 7, backend.now()), signal_id)
    found = backend.next_signal("run-1", ["tick"])
    assert found is not None
    assert found.signal_id == signal_id
    record = backend.load_run("run-1")
    assert record is not None
    assert record.steps["a"].state is StepState.PENDING


def test_a_signal_consumed_already_is_never_consumed_again(backend: Backend, new_run: NewRunFactory) -> None:
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    signal_id = backend.send_signal("run-1", "tick", "1", now=backend.now())
    backend.record_checkpoint_consuming(completing(epoch, backend.now()), signal_id)
    with pytest.raises(LeaseLostError):
        backend.record_checkpoint_consuming(completing(epoch, backend.now()), signal_id)


def test_a_signal_to_an_unknown_or_finished_run_is_refused(backend: Backend, new_run: NewRunFactory) -> None:
    with pytest.raises(RunNotFoundError):
        backend.send_signal("nobody", "tick", "1", now=backend.now())
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    backend.record_checkpoint(
        Checkpoint("run-1", epoch, (), RunState.COMPLETED, "1", None, None, backend.now())
    )
    with pytest.raises(RunFinishedError, match="completed"):
        backend.send_signal("run-1", "tick", "1", now=backend.now())


def test_a_signal_wakes_a_run_handed_back_to_wait_for_it(backend: Backend, new_run: NewRunFactory) -> None:
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    backend.release_run(workflow_id="run-1", epoch=epoch, wake_at=WAIT_FOREVER, wake_for_signals=["tick"])
    assert backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5) == []
    backend.send_signal("run-1", "tick", "1", now=backend.now())
    assert len(backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)) == 1


def test_a_signal_sent_while_the_run_is_held_is_not_slept_through_when_it_is_handed_back(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """The driver looked (none there), a signal came, then the run is handed back to wait: it stays ready."""
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    assert backend.next_signal("run-1", ["tick"]) is None
    backend.send_signal("run-1", "tick", "1", now=backend.now())
    backend.release_run(workflow_id="run-1", epoch=epoch, wake_at=WAIT_FOREVER, wake_for_signals=["tick"])
    assert len(backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)) == 1


def test_an_unrelated_signal_does_not_keep_a_waiting_run_awake(
    backend: Backend, new_run: NewRunFactory
) -> None:
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    backend.send_signal("run-1", "other", "1", now=backend.now())
    backend.release_run(workflow_id="run-1", epoch=epoch, wake_at=WAIT_FOREVER, wake_for_signals=["tick"])
    assert backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5) == []


def test_sending_a_signal_wakes_an_idle_worker(backend: Backend, new_run: NewRunFactory) -> None:
    backend.submit_run(new_run(), now=backend.now())
    epoch = claim_one(backend)
    backend.release_run(workflow_id="run-1", epoch=epoch, wake_at=WAIT_FOREVER, wake_for_signals=["tick"])
    woken: list[bool] = []
    started = threading.Event()

    def listen() -> None:
        started.set()
        woken.append(backend.wait_for_work(5.0))

    listener = threading.Thread(target=listen)
    listener.start()
    started.wait()
    time.sleep(0.2)  # the listener is waiting
    sent = time.monotonic()
    backend.send_signal("run-1", "tick", "1", now=backend.now())
    listener.join(10)
    assert woken == [True]
    assert time.monotonic() - sent < 1.0
