"""Checks on what callers hand the engine, each failing with an error that names the argument."""

from __future__ import annotations

import re

from conveyor.backends.base import Backend
from conveyor.backends.memory import InMemoryBackend
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sqlite import SqliteBackend
from conveyor.definition.flow import Flow
from conveyor.definition.workflow import Workflow
from conveyor.errors import InvalidArgumentError

MAX_WORKFLOW_ID_LENGTH = 255
MAX_REASON_LENGTH = 2000
"""The longest reason a cancel may record."""
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")
_UNPRINTABLE_IN_PROSE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
"""What no stored sentence may hold: control characters but tab and newline, and lone surrogates (not
UTF-8, so no backend can store them; PostgreSQL refuses NUL too)."""
_KNOWN_BACKENDS = (InMemoryBackend, SqliteBackend, PostgresBackend)


def check_workflow_id(workflow_id: object) -> str:
    """Return ``workflow_id`` if it is usable, else raise :class:`InvalidArgumentError` saying why."""
    if not isinstance(workflow_id, str):
        raise InvalidArgumentError(
            f"workflow_id must be a string, not {type(workflow_id).__name__}",
            argument="workflow_id",
        )
    if not workflow_id.strip():
        raise InvalidArgumentError("workflow_id must not be empty", argument="workflow_id")
    if len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        raise InvalidArgumentError(
            f"workflow_id is {len(workflow_id)} characters long; the limit is {MAX_WORKFLOW_ID_LENGTH}",
            argument="workflow_id",
        )
    if _CONTROL_CHARACTERS.search(workflow_id):
        raise InvalidArgumentError("workflow_id must not contain control characters", argument="workflow_id")
    if _LONE_SURROGATES.search(workflow_id):
        raise InvalidArgumentError("workflow_id must not contain lone surrogates", argument="workflow_id")
    return workflow_id


def check_reason(reason: object) -> str:
    """Return ``reason`` (why a run is cancelled) if every backend can store it, else InvalidArgumentError."""
    if not isinstance(reason, str):
        raise InvalidArgumentError(f"reason must be text, not {type(reason).__name__}", argument="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgumentError(
            f"reason is {len(reason)} characters long; the limit is {MAX_REASON_LENGTH}", argument="reason"
        )
    refused = _UNPRINTABLE_IN_PROSE.search(reason)
    if refused is not None:
        raise InvalidArgumentError(
            f"reason must be printable text; it holds {refused.group()!r}", argument="reason"
        )
    return reason


def check_workflow(workflow: object) -> Workflow:
    """Return ``workflow`` if it is a built Workflow, else raise InvalidArgumentError saying what to pass."""
    if isinstance(workflow, Workflow):
        return workflow
    if isinstance(workflow, Flow):
        raise InvalidArgumentError(
            f"got the unbuilt flow {workflow.name!r}; pass flow.build() instead",
            argument="workflow",
        )
    raise InvalidArgumentError(
        f"workflow must be a built Workflow, not {type(workflow).__name__}", argument="workflow"
    )


def check_backend(backend: object) -> Backend:
    """Return ``backend`` if it keeps the Backend contract, else raise InvalidArgumentError."""
    if type(backend) in _KNOWN_BACKENDS:
        return backend  # type: ignore[return-value]
    if not isinstance(backend, Backend):
        raise InvalidArgumentError(
            f"backend must be a conveyor backend (InMemoryBackend, SqliteBackend, ...), "
            f"not {type(backend).__name__}",
            argument="backend",
        )
    return backend
