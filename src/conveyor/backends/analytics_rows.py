"""The analytics figures from the rows the SQL backends' queries return (one reading for SQLite and
PostgreSQL): a workflow's name, its runs by final state (in the order of ``FINAL_STATE_NAMES``), its
duration percentiles and step counts; a step's counts, time and percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.core.analytics import FINAL_STATE_NAMES, RunFigures, StepFigures

_STATES = len(FINAL_STATE_NAMES)


def run_figures_from_row(row: Sequence[Any]) -> RunFigures:
    """One row of a ``run_figures`` query as :class:`RunFigures`."""
    rest = 1 + _STATES
    return RunFigures(
        workflow_name=row[0],
        by_state=tuple(int(count) for count in row[1:rest]),
        duration_p50=float(row[rest]),
        duration_p95=float(row[rest + 1]),
        duration_p99=float(row[rest + 2]),
        step_executions=int(row[rest + 3]),
        retried_steps=int(row[rest + 4]),
    )


def step_figures_from_row(row: Sequence[Any]) -> StepFigures:
    """One row of a ``step_figures`` query as :class:`StepFigures`."""
    return StepFigures(
        workflow_name=row[0],
        step_name=row[1],
        executions=int(row[2]),
        attempts=int(row[3]),
        retried=int(row[4]),
        failed=int(row[5]),
        timed=int(row[6]),
        total_seconds=float(row[7]),
        duration_p50=float(row[8]),
        duration_p95=float(row[9]),
    )
