"""Pure decisions: run and step states, what a run records, and what happens next. No I/O."""

from conveyor.core.decide import Action, Decision, compensation_order, decide
from conveyor.core.records import Checkpoint, Failure, NewRun, RunRecord, StepRecord
from conveyor.core.states import FINAL_RUN_STATES, RunState, StepState

__all__ = [
    "FINAL_RUN_STATES",
    "Action",
    "Checkpoint",
    "Decision",
    "Failure",
    "NewRun",
    "RunRecord",
    "RunState",
    "StepRecord",
    "StepState",
    "compensation_order",
    "decide",
]
