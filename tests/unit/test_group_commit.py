"""Group commit: checkpoints from many threads share transactions, and each still fails on its own."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from conveyor import LeaseLostError, SqliteBackend
from conveyor.core.records import Checkpoint, NewRun, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.engine.group_commit import GroupCommitter
from conveyor.errors import BackendError


def checkpoint(workflow_id: str, epoch: int = 1) -> Checkpoint:
    record = StepRecord("only", StepState.COMPLETED, attempts=1, result='"ok"', completion_order=1)
    return Checkpoint(workflow_id, epoch, (record,), RunState.COMPLETED, '"ok"', None, None, 1.0)


def test_checkpoints_from_many_threads_are_written_in_fewer_transactions(tmp_path: Path) -> None:
    """32 threads committing at once: all are written, in fewer batches than checkpoints."""
    with SqliteBackend(tmp_path / "g.db") as backend:
        for n in range(32):
            backend.start_run(NewRun(f"run-{n}", "w", "1", "{}", "c", ("only",)), owner="me", now=0.0)
        committer = GroupCommitter(backend)
        start = threading.Barrier(32)

        def commit(n: int) -> None:
            start.wait()
            committer.record_checkpoint(checkpoint(f"run-{n}"))

        threads = [threading.Thread(target=commit, args=(n,)) for n in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        committer.close()
        assert committer.checkpoints == 32
        assert committer.batches < 32
        for n in range(32):
            loaded = backend.load_run(f"run-{n}")
            assert loaded is not None
            assert loaded.state is RunState.COMPLETED


def test_a_fenced_out_checkpoint_fails_alone(tmp_path: Path) -> None:
    """In one batch, the checkpoint with a stale epoch raises LeaseLostError; the other is written."""
    with SqliteBackend(tmp_path / "g.db") as backend:
        for name in ("kept", "stolen"):
            backend.start_run(NewRun(name, "w", "1", "{}", "c", ("only",)), owner="me", now=0.0)
        backend.start_run(NewRun("stolen", "w", "1", "{}", "c", ("only",)), owner="thief", now=0.0)
        refused = backend.record_checkpoints([checkpoint("kept"), checkpoint("stolen")])
        assert refused == {"stolen"}
        committer = GroupCommitter(backend)
        with pytest.raises(LeaseLostError, match="'stolen' was taken over"):
            committer.record_checkpoint(checkpoint("stolen"))
        committer.close()
        kept = backend.load_run("kept")
        assert kept is not None
        assert kept.state is RunState.COMPLETED


def test_a_failing_transaction_fails_every_waiting_driver() -> None:
    """A backend error reaches each driver of the batch instead of leaving it waiting."""

    class Broken:
        def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
            raise BackendError("disk full")

    committer = GroupCommitter(Broken())
    with pytest.raises(BackendError, match="disk full"):
        committer.record_checkpoint(checkpoint("any"))
    committer.close()


def test_several_writers_write_batches_side_by_side_and_each_checkpoint_once() -> None:
    """A second writer writes a batch while the first is still writing its own (one writer would wait)."""
    written: list[str] = []
    first_inside = threading.Event()
    second_inside = threading.Event()

    class SlowBackend:
        def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
            if not first_inside.is_set():
                first_inside.set()
                assert second_inside.wait(timeout=5), "no second writer wrote while the first was writing"
            else:
                second_inside.set()
            written.extend(checkpoint.workflow_id for checkpoint in checkpoints)
            return set()

    committer = GroupCommitter(SlowBackend(), writers=3)
    first = threading.Thread(target=committer.record_checkpoint, args=(checkpoint("run-0"),))
    first.start()
    assert first_inside.wait(timeout=5)
    others = [
        threading.Thread(target=committer.record_checkpoint, args=(checkpoint(f"run-{n}"),))
        for n in range(1, 20)
    ]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(timeout=10)
    committer.close()

    assert second_inside.is_set()
    assert sorted(written) == sorted(f"run-{n}" for n in range(20))
    assert committer.checkpoints == 20
