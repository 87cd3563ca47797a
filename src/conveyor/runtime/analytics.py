"""The analytics a runtime answers (``Conveyor.performance``, ``Conveyor.bottlenecks``): the window and the
workflows asked about, resolved against the runtime's clock and registry, then computed by its backend."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from conveyor.core.analytics import AnalyticsQuery
from conveyor.definition.registry import UnknownWorkflowError
from conveyor.definition.workflow import Workflow
from conveyor.errors import InvalidArgumentError
from conveyor.observe.analytics import Bottlenecks, Performance, Window, bottleneck_report, performance_report

if TYPE_CHECKING:
    from conveyor.runtime.app import Conveyor

DEFAULT_WINDOW = dt.timedelta(hours=24)
"""The window the analytics cover when ``since`` is not given: the day before ``until``."""

Moment = dt.datetime | dt.timedelta | float | int
"""When a window starts or ends: a timezone-aware datetime, epoch seconds, or (for ``since``) a timedelta,
that long before ``until``."""


def performance(
    app: Conveyor,
    since: Moment | None,
    until: Moment | None,
    workflow: Workflow | type | str | None,
    namespace: str | None,
) -> Performance:
    """See :meth:`conveyor.Conveyor.performance`."""
    query = _query(app, since, until, workflow, namespace)
    return performance_report(Window(query.since, query.until), app.backend.run_figures(query))


def bottlenecks(
    app: Conveyor,
    since: Moment | None,
    until: Moment | None,
    workflow: Workflow | type | str | None,
    namespace: str | None,
) -> Bottlenecks:
    """See :meth:`conveyor.Conveyor.bottlenecks`."""
    query = _query(app, since, until, workflow, namespace)
    waits = {
        (entry.workflow.name, spec.name): spec.waits is not None
        for entry in app.registry
        for spec in entry.workflow.steps
    }
    return bottleneck_report(Window(query.since, query.until), app.backend.step_figures(query), waits)


def _query(
    app: Conveyor,
    since: Moment | None,
    until: Moment | None,
    workflow: Workflow | type | str | None,
    namespace: str | None,
) -> AnalyticsQuery:
    end = app.clock.now() if until is None else epoch_seconds(until, "until")
    start = end - DEFAULT_WINDOW.total_seconds() if since is None else epoch_seconds(since, "since", end)
    if not start < end:
        raise InvalidArgumentError(
            f"the window must start before it ends, not at {_shown(start)} for an end at {_shown(end)}",
            argument="since",
        )
    return AnalyticsQuery(start, end, _workflow_names(app, workflow, namespace))


def epoch_seconds(value: object, argument: str, until: float | None = None) -> float:
    """Epoch seconds of ``value``, a timezone-aware datetime or epoch seconds (InvalidArgumentError naming
    ``argument`` for anything else); with ``until``, a timedelta too, counted back from it."""
    if isinstance(value, dt.timedelta) and until is not None:
        if value <= dt.timedelta(0):
            raise InvalidArgumentError(
                f"{argument} as a timedelta must be positive, not {value}", argument=argument
            )
        return until - value.total_seconds()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidArgumentError(
                f"{argument} must be a timezone-aware datetime (such as datetime.now(UTC)), not {value!r}",
                argument=argument,
            )
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    what = "a timezone-aware datetime" + (
        " or epoch seconds" if until is None else ", epoch seconds or a timedelta"
    )
    raise InvalidArgumentError(f"{argument} must be {what}, not {value!r}", argument=argument)


def _shown(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _workflow_names(
    app: Conveyor, workflow: Workflow | type | str | None, namespace: str | None
) -> tuple[str, ...] | None:
    """The names the chosen runs record: of ``workflow`` (in ``namespace``), of every workflow registered
    in ``namespace``, or None for every workflow."""
    if namespace is not None and not isinstance(namespace, str):
        raise InvalidArgumentError(f"namespace must be text, not {namespace!r}", argument="namespace")
    if workflow is None:
        if namespace is None:
            return None
        names = tuple(sorted({entry.workflow.name for entry in app.registry if entry.namespace == namespace}))
        if not names:
            known = sorted({entry.namespace for entry in app.registry})
            raise InvalidArgumentError(
                f"no workflow is registered in namespace {namespace!r}; "
                f"namespaces: {', '.join(known) or 'none'}",
                argument="namespace",
            )
        return names
    if isinstance(workflow, str):
        try:
            return (app.registry.get(workflow, namespace=namespace).name,)
        except UnknownWorkflowError:
            if namespace is not None:
                raise
            return (workflow,)  # runs of workflows this runtime does not know are counted too
    return (app._resolve(workflow, None).name,)
