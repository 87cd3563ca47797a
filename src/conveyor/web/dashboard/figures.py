"""The analytics page: the performance and bottleneck figures of a chosen window, as SVG bar charts and
tables (``app.performance()`` and ``app.bottlenecks()``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import ConveyorError
from conveyor.observe.analytics import Bottlenecks, Performance
from conveyor.web.dashboard.access import dashboard_of, signed_in
from conveyor.web.dashboard.charts import BarChart, Part, bar_chart
from conveyor.web.dashboard.rendering import percent, seconds

WINDOWS: dict[str, dt.timedelta] = {
    "1h": dt.timedelta(hours=1),
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
"""The analytics windows a person can choose (the 24 hours before now by default)."""
DEFAULT_WINDOW = "24h"
_FINAL_STATES = ("completed", "compensated", "cancelled", "failed", "compensation_failed", "dead_lettered")


def analytics_page(request: Request) -> Response:
    """``GET /analytics``: the performance and bottleneck figures of a chosen window, as charts and tables."""
    visitor = signed_in(request)
    if isinstance(visitor, Response):
        return visitor
    dashboard = dashboard_of(request)
    app = dashboard.app
    window = request.query_params.get("window") or DEFAULT_WINDOW
    workflow = request.query_params.get("workflow") or None
    names = sorted({found.name for found in app.workflows()})
    context: dict[str, Any] = {
        "windows": list(WINDOWS),
        "window": window,
        "workflow": workflow,
        "workflow_names": names,
        "performance": None,
        "bottlenecks": None,
        "charts": (),
        "error": None,
    }
    if window not in WINDOWS:
        context["error"] = f"{window!r} is not a window; choose one of {', '.join(WINDOWS)}"
        return dashboard.templates.page(
            request, "analytics.html", visitor=visitor, status_code=400, **context
        )
    try:
        performance = app.performance(since=WINDOWS[window], workflow=workflow)
        bottlenecks = app.bottlenecks(since=WINDOWS[window], workflow=workflow)
    except ConveyorError as exc:
        context["error"] = str(exc)
        return dashboard.templates.page(
            request, "analytics.html", visitor=visitor, status_code=400, **context
        )
    context.update(performance=performance, bottlenecks=bottlenecks, charts=_charts(performance, bottlenecks))
    return dashboard.templates.page(request, "analytics.html", visitor=visitor, **context)


BOTTLENECK_CHART_STEPS = 15
"""How many of the worst steps the bottleneck chart draws (the table lists them all)."""


def _charts(performance: Performance, bottlenecks: Bottlenecks) -> tuple[BarChart, ...]:
    workflows = performance.workflows
    finished = bar_chart(
        "Runs finished, by how they ended",
        [
            (
                found.workflow,
                [
                    Part(
                        found.by_state.get(state, 0),
                        f"state-{state}",
                        f"{found.by_state.get(state, 0)} {state}",
                    )
                    for state in _FINAL_STATES
                ],
                f"{found.finished} run{'' if found.finished == 1 else 's'}",
            )
            for found in workflows
        ],
    )
    durations = bar_chart(
        "Run duration, 95th percentile",
        [
            (
                found.workflow,
                [Part(found.duration_p95_seconds, "duration", f"p95 {seconds(found.duration_p95_seconds)}")],
                seconds(found.duration_p95_seconds),
            )
            for found in workflows
        ],
    )
    health = bar_chart(
        "Health score (out of 100)",
        [
            (
                found.workflow,
                [
                    Part(
                        found.health_score,
                        _health_class(found.health_score),
                        f"{found.health_score:.0f} / 100",
                    )
                ],
                f"{found.health_score:.0f}",
            )
            for found in workflows
        ],
        maximum=100.0,
    )
    slowest = bar_chart(
        "Where the time goes: each step's executions together",
        [
            (
                f"{step.workflow} · {step.step}",
                [
                    Part(
                        step.total_seconds,
                        "wait" if step.waits else "work",
                        f"{seconds(step.total_seconds)} over {step.executions} executions, "
                        f"retry rate {percent(step.retry_rate)}",
                    )
                ],
                seconds(step.total_seconds),
            )
            for step in bottlenecks.steps[:BOTTLENECK_CHART_STEPS]
        ],
    )
    return tuple(chart for chart in (finished, durations, health, slowest) if chart.bars)


def _health_class(score: float) -> str:
    return "health-good" if score >= 90 else "health-fair" if score >= 70 else "health-poor"
