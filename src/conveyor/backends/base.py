"""The one contract every backend keeps: where runs and their checkpoints are stored."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from conveyor.core.records import Checkpoint, NewRun, RunRecord


@runtime_checkable
class Backend(Protocol):
    """Durable state for runs. ``InMemoryBackend``, ``SqliteBackend`` and ``PostgresBackend`` implement it.

    Every method is one transaction. Writes about a run are fenced by its epoch: a process that took a run
    over bumps the epoch, and a checkpoint still carrying the old epoch is refused with
    :class:`~conveyor.errors.LeaseLostError`.
    """

    def start_run(
        self, run: NewRun, *, owner: str, now: float, durable: bool = True
    ) -> tuple[RunRecord, bool]:
        """Record ``run``, or take over the run that already has its ``workflow_id``.

        Returns the run's record and whether it was created. A new run gets epoch 1. An existing run that
        has not ended is taken over: its epoch and ``recoveries`` go up by one and ``owner`` is recorded.
        An existing run that has ended is returned unchanged. ``durable=False`` lets the backend skip
        flushing this one write to disk (it becomes durable with the next durable write); callers use it
        only where losing the write in a power cut loses nothing a caller was told about.
        """
        ...

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` in one transaction, unless the run's epoch moved on (LeaseLostError)."""
        ...

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record with all its steps, or ``None`` if there is no such run."""
        ...

    def close(self) -> None:
        """Release connections and files. The backend cannot be used afterwards."""
        ...
