"""``InMemoryBackend``: the backend contract kept in this process's memory, for tests and scripts.

It keeps rows as tuples of strings and numbers (the same rows the SQL backends store), which the garbage
collector does not have to scan: a process holding a million finished runs stays fast.
"""

from __future__ import annotations

import threading
from typing import Any, Self

import orjson

from conveyor.backends.rows import (
    RUN_STATE_TEXT,
    StepRow,
    failure_to_text,
    run_from_rows,
    step_to_row,
)
from conveyor.core.records import Checkpoint, NewRun, RunRecord, StepRecord
from conveyor.errors import LeaseLostError

_EPOCH, _RECOVERIES = 5, 6  # positions in what changes about a run (see __init__)


class InMemoryBackend:
    """Keeps runs in memory; nothing survives the process. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # What never changes about a run: (workflow_id, name, version, input, correlation_id, step_names
        # as JSON, created_at); and what does: (state, output, error, updated_at, wake_at, epoch, recoveries,
        # generation).
        self._fixed: dict[str, tuple[object, ...]] = {}
        self._changing: dict[str, tuple[Any, ...]] = {}
        self._steps: dict[tuple[str, str], StepRow] = {}
        self._recorded_steps: dict[str, tuple[str, ...]] = {}

    def start_run(
        self, run: NewRun, *, owner: str, now: float, durable: bool = True
    ) -> tuple[RunRecord, bool]:
        """Record ``run`` or take over the existing one (see :class:`~conveyor.backends.base.Backend`)."""
        workflow_id = run.workflow_id
        with self._lock:
            if workflow_id not in self._fixed:
                self._fixed[workflow_id] = (
                    workflow_id,
                    run.workflow_name,
                    run.workflow_version,
                    run.input,
                    run.correlation_id,
                    orjson.dumps(run.step_names).decode(),
                    now,
                )
                self._changing[workflow_id] = (
                    RUN_STATE_TEXT[run.state],
                    None,
                    None,
                    now,
                    None,
                    1,
                    0,
                    0,
                )
                self._recorded_steps[workflow_id] = ()
                record = RunRecord(
                    workflow_id=workflow_id,
                    workflow_name=run.workflow_name,
                    workflow_version=run.workflow_version,
                    state=run.state,
                    input=run.input,
                    correlation_id=run.correlation_id,
                    step_names=run.step_names,
                    steps={name: StepRecord(name) for name in run.step_names},
                    created_at=now,
                    updated_at=now,
                    epoch=1,
                )
                return record, True
            record = self._load(workflow_id)
            if record.is_final:
                return record, False
            state, output, error, _updated, wake_at, epoch, recoveries, generation = self._changing[
                workflow_id
            ]
            self._changing[workflow_id] = (
                state,
                output,
                error,
                now,
                wake_at,
                epoch + 1,
                recoveries + 1,
                generation,
            )
            record.epoch += 1
            record.recoveries += 1
            record.updated_at = now
            return record, False

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` at once, unless the run's epoch moved on."""
        workflow_id = checkpoint.workflow_id
        with self._lock:
            changing = self._changing.get(workflow_id)
            if changing is None or changing[_EPOCH] != checkpoint.epoch:
                raise LeaseLostError(
                    f"run {workflow_id!r} was taken over by another process; this write was refused",
                    workflow_id=workflow_id,
                )
            error = checkpoint.error
            self._changing[workflow_id] = (
                RUN_STATE_TEXT[checkpoint.state],
                checkpoint.output,
                None if error is None else failure_to_text(error),
                checkpoint.at,
                checkpoint.wake_at,
                checkpoint.epoch,
                changing[_RECOVERIES],
                checkpoint.generation,
            )
            for record in checkpoint.steps:
                key = (workflow_id, record.name)
                if key not in self._steps:
                    self._recorded_steps[workflow_id] += (record.name,)
                self._steps[key] = step_to_row(record)

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record, or ``None``."""
        with self._lock:
            return self._load(workflow_id) if workflow_id in self._fixed else None

    def _load(self, workflow_id: str) -> RunRecord:
        fixed = self._fixed[workflow_id]
        state, output, error, updated_at, wake_at, epoch, recoveries, generation = self._changing[workflow_id]
        row = (
            *fixed[:3],
            state,
            fixed[3],
            output,
            error,
            fixed[4],
            fixed[5],
            fixed[6],
            updated_at,
            wake_at,
            epoch,
            recoveries,
            generation,
        )
        steps = [self._steps[(workflow_id, name)] for name in self._recorded_steps[workflow_id]]
        return run_from_rows(row, steps)

    def close(self) -> None:
        """Forget everything."""
        with self._lock:
            self._fixed.clear()
            self._changing.clear()
            self._steps.clear()
            self._recorded_steps.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<InMemoryBackend runs={len(self._fixed)}>"
