"""Pure decisions: run and step states, what a run records, what happens next, and what an outcome changes.

No I/O, and nothing here changes what it is given: :func:`decide` says what to do next and :func:`settle`
returns a run's new record and the checkpoint to write.
"""

from conveyor.core.decide import Action, Decision, compensation_order, decide
from conveyor.core.records import Checkpoint, Failure, NewRun, RunRecord, StepRecord
from conveyor.core.settle import (
    Outcome,
    Settled,
    StepFailed,
    StepSucceeded,
    UndoFailed,
    UndoSucceeded,
    settle,
)
from conveyor.core.states import FINAL_RUN_STATES, RunState, StepState

__all__ = [
    "FINAL_RUN_STATES",
    "Action",
    "Checkpoint",
    "Decision",
    "Failure",
    "NewRun",
    "Outcome",
    "RunRecord",
    "RunState",
    "Settled",
    "StepFailed",
    "StepRecord",
    "StepState",
    "StepSucceeded",
    "UndoFailed",
    "UndoSucceeded",
    "compensation_order",
    "decide",
    "settle",
]
