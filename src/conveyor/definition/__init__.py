"""What users declare: tasks, retry policies, flows and the immutable workflow graph. Pure: no I/O."""

from conveyor.definition.flow import Flow, Fork
from conveyor.definition.retry import RetryPolicy
from conveyor.definition.task import StepContext, Task, TaskSpec, task
from conveyor.definition.workflow import StepDefinition, StepSpec, Workflow, build_workflow

__all__ = [
    "Flow",
    "Fork",
    "RetryPolicy",
    "StepContext",
    "StepDefinition",
    "StepSpec",
    "Task",
    "TaskSpec",
    "Workflow",
    "build_workflow",
    "task",
]
