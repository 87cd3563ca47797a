"""Listing the runs a runtime's backend holds, a page at a time (what ``Conveyor.runs`` does)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from conveyor.backends.listing import RunQuery, check_limit, page_token, read_page_token
from conveyor.core.records import RunPage
from conveyor.core.states import RunState
from conveyor.definition.registry import UnknownWorkflowError
from conveyor.definition.workflow import Workflow
from conveyor.errors import InvalidArgumentError
from conveyor.runtime.analytics import epoch_seconds

if TYPE_CHECKING:
    from conveyor.runtime.app import Conveyor


def list_runs(
    app: Conveyor,
    workflow: Workflow | type | str | None,
    state: RunState | str | Iterable[RunState | str] | None,
    *,
    limit: int,
    page: str | None,
    version: str | None = None,
    correlation_id: str | None = None,
    created_after: dt.datetime | float | None = None,
    created_before: dt.datetime | float | None = None,
) -> RunPage:
    """The runs recorded, newest first: see :meth:`conveyor.Conveyor.runs`."""
    query = RunQuery(
        workflow_name=None if workflow is None else _workflow_name(app, workflow),
        workflow_version=_text(version, "version"),
        states=_states(state),
        correlation_id=_text(correlation_id, "correlation_id"),
        created_after=None if created_after is None else epoch_seconds(created_after, "created_after"),
        created_before=None if created_before is None else epoch_seconds(created_before, "created_before"),
        before=None if page is None else read_page_token(page),
        limit=check_limit(limit),
    )
    found = app.backend.list_runs(query)
    if len(found) <= query.limit:
        return RunPage(tuple(found))
    return RunPage(tuple(found[: query.limit]), page_token(found[query.limit - 1]))


def _text(value: object, argument: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidArgumentError(f"{argument} must be text, not {value!r}", argument=argument)


def _workflow_name(app: Conveyor, workflow: Workflow | type | str) -> str:
    if isinstance(workflow, str):
        try:
            return app.registry.get(workflow).name
        except UnknownWorkflowError:
            return workflow  # runs of workflows this runtime does not know are listed too
    return app._resolve(workflow, None).name


def _states(state: RunState | str | Iterable[RunState | str] | None) -> tuple[RunState, ...]:
    """The states a listing keeps, each checked: a misspelt one is a clear error, not an empty list."""
    if state is None:
        return ()
    given = [state] if isinstance(state, str) else list(state)
    chosen = []
    for one in given:
        try:
            chosen.append(RunState(one))
        except ValueError:
            known = ", ".join(member.value for member in RunState)
            raise InvalidArgumentError(f"{one!r} is not a run state; the states are {known}") from None
    return tuple(chosen)
