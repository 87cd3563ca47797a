"""What the runtime checks and records when a run starts: the new run's row, and whether a stored run fits."""

from __future__ import annotations

import itertools
import os
import secrets
from typing import Any

from conveyor.codec import DEFAULT_MAX_VALUE_BYTES, encode
from conveyor.core.records import NewRun, RunRecord
from conveyor.definition.settings import workflow_for_run
from conveyor.definition.workflow import Workflow
from conveyor.errors import DefinitionChangedError, WorkflowMismatchError


class _CorrelationIds:
    """New correlation ids, unique across processes; renewed in a forked child, which is another process."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        """Take a new random prefix and restart the counter."""
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def new(self) -> str:
        """A new id: a random per-process prefix and a counter (32 hex digits).

        Much cheaper than 16 fresh random bytes per run, which cost more than a step in memory.
        """
        return f"{self._prefix}{next(self._counter):016x}"


_CORRELATION_IDS = _CorrelationIds()


def new_run(
    workflow: Workflow,
    workflow_id: str,
    initial_input: Any,
    correlation_id: str | None,
    *,
    max_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> NewRun:
    """Check the input against the workflow's schema and encode it (at most ``max_bytes`` of JSON), and
    check what the workflow's ``step_settings`` hook gives the run, before anything is stored."""
    if workflow.input_validator is not None:
        initial_input = workflow.input_validator(initial_input)
    encoded = encode(initial_input, what="input", max_bytes=max_bytes)
    if workflow.step_settings is not None:  # what it gives this run is checked before anything is stored
        workflow_for_run(workflow, encoded)
    return NewRun(
        workflow_id=workflow_id,
        workflow_name=workflow.name,
        workflow_version=workflow.version,
        input=encoded,
        correlation_id=correlation_id or _CORRELATION_IDS.new(),
        step_names=workflow.step_names,
        definition_hash=workflow.definition_hash or None,
    )


def stored_run(record: RunRecord, workflow: Workflow) -> NewRun:
    """The run ``record`` stands for, as :func:`new_run` gives it, to be taken and driven again here.

    Its input was checked when it was first recorded; its definition hash is the one it was recorded by.
    """
    return NewRun(
        workflow_id=record.workflow_id,
        workflow_name=record.workflow_name,
        workflow_version=record.workflow_version,
        input=record.input,
        correlation_id=record.correlation_id,
        step_names=workflow.step_names,
        definition_hash=record.definition_hash,
        deadline_at=record.deadline_at,
        trace_context=record.trace_context,
    )


def recorded_by(run: RunRecord, workflow: Workflow) -> bool:
    """Whether ``run`` was recorded by this definition of ``workflow`` (or before definitions were hashed)."""
    stored = run.definition_hash
    return stored is None or not workflow.definition_hash or stored == workflow.definition_hash


def same_workflow_or_raise(record: RunRecord, workflow: Workflow) -> None:
    """Raise WorkflowMismatchError unless the stored run belongs to ``workflow``: its name and version,
    and the definition the run recorded (DefinitionChangedError) or, for a run recorded before definitions
    were hashed, its steps."""
    workflow_id = record.workflow_id
    if record.corruption is not None:  # it reads as failed, and nothing will run it: no step can mismatch
        return
    if record.workflow_name != workflow.name or record.workflow_version != workflow.version:
        raise WorkflowMismatchError(
            f"run {workflow_id!r} belongs to workflow {record.workflow_name!r} "
            f"v{record.workflow_version}, not {workflow.name!r} v{workflow.version}",
            workflow_id=workflow_id,
        )
    stored_hash = record.definition_hash
    if stored_hash is not None and not recorded_by(record, workflow):
        raise definition_changed(record, workflow, stored_hash)
    unknown = set(record.steps) - set(workflow.step_names)
    if unknown:
        raise WorkflowMismatchError(
            f"run {workflow_id!r} has steps {sorted(unknown)} that workflow {workflow.name!r} "
            f"v{workflow.version} does not declare; was the workflow changed without a new version?",
            workflow_id=workflow_id,
        )


def definition_changed(record: RunRecord, workflow: Workflow, stored_hash: str) -> DefinitionChangedError:
    """The error for ``workflow`` asked to run a run recorded by another definition of it."""
    stored, new = record.step_names, workflow.step_names
    added = tuple(name for name in new if name not in stored)
    removed = tuple(name for name in stored if name not in new)
    if added or removed:
        parts = [f"{what} {list(names)}" for what, names in (("adds", added), ("removes", removed)) if names]
        change = "the new definition " + " and ".join(parts)
    elif stored != new:
        change = f"the same steps, in another order ({list(stored)} before, {list(new)} now)"
    else:
        change = "the same steps, with other dependencies or inputs"
    return DefinitionChangedError(
        f"run {record.workflow_id!r} was recorded by another definition of workflow {workflow.name!r} "
        f"v{workflow.version} (definition {stored_hash}, now {workflow.definition_hash}): {change}. "
        "Give the changed workflow a new version (or name), or use a new workflow_id",
        workflow_id=record.workflow_id,
        workflow_name=workflow.name,
        stored_hash=stored_hash,
        new_hash=workflow.definition_hash,
        added_steps=added,
        removed_steps=removed,
    )
