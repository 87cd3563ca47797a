"""The analytics and retention of :class:`~conveyor.backends.postgres.PostgresBackend`, over finished runs.

The queries are the ``run_figures``, ``step_figures`` and ``prune_finished_runs`` sections of
``sql/postgres/analytics.sql``; what they read (``finished_at``, ``conveyor_step_outcomes``) is written by
the trigger of schema 14 as each run finishes. A window holding whole settled hours reads them from the
hourly rollups of schema 16 (:mod:`conveyor.backends.postgres_hours`). Each function runs on the caller's
cursor, in a transaction of its own (the ``analytics_settings`` it makes hold for that transaction alone).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, LiteralString

from conveyor.backends import postgres_hours
from conveyor.backends.analytics_rows import run_figures_from_row, step_figures_from_row
from conveyor.backends.postgres_sql import queries
from conveyor.backends.retention import RUN_HISTORY_TABLES
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures

if TYPE_CHECKING:
    import psycopg

    Cursor = psycopg.Cursor[tuple[Any, ...]]


def _params(query: AnalyticsQuery) -> dict[str, Any]:
    names = None if query.workflow_names is None else list(query.workflow_names)
    return {"since": query.since, "until": query.until, "workflow_names": names}


def _settle_planner(cursor: Cursor) -> None:
    """``analytics_settings`` for the caller's transaction: no JIT, sorts in memory."""
    cursor.execute(queries()["analytics_settings"])


def _rollups(cursor: Cursor, query: AnalyticsQuery, read_only: bool) -> postgres_hours.HourSpan | None:
    """The whole settled hours of the window to read from the rollups; None to read it run by run (no such
    hour, or a read-only reader who finds some of their rollups not written, and may write none)."""
    hours = postgres_hours.settled_hours(query, time.time())
    if hours is None or (read_only and not postgres_hours.all_written(cursor, hours)):
        return None
    return hours


def run_figures(cursor: Cursor, query: AnalyticsQuery, *, read_only: bool = False) -> list[RunFigures]:
    """Each workflow's figures over the runs finished in ``query``'s window (in the caller's transaction):
    its whole settled hours from their rollups (:mod:`~conveyor.backends.postgres_hours`), else run by run."""
    _settle_planner(cursor)
    hours = _rollups(cursor, query, read_only)
    if hours is not None:
        return postgres_hours.run_figures(cursor, query, hours, write=not read_only)
    cursor.execute(queries()["run_figures"], _params(query))
    return [run_figures_from_row(row) for row in cursor.fetchall()]


def step_figures(cursor: Cursor, query: AnalyticsQuery, *, read_only: bool = False) -> list[StepFigures]:
    """Each (workflow, step)'s figures over the runs finished in ``query``'s window (in the caller's
    transaction): its whole settled hours from their rollups, else outcome by outcome."""
    _settle_planner(cursor)
    hours = _rollups(cursor, query, read_only)
    if hours is not None:
        return postgres_hours.step_figures(cursor, query, hours, write=not read_only)
    cursor.execute(queries()["step_figures"], _params(query))
    return [step_figures_from_row(row) for row in cursor.fetchall()]


def prune_finished_runs(cursor: Cursor, *, finished_before: float, limit: int) -> int:
    """Delete up to ``limit`` runs finished before ``finished_before`` (in the caller's transaction); how
    many."""
    cursor.execute(queries()["existing_tables"], {"tables": list(RUN_HISTORY_TABLES)})
    existing = {row[0] for row in cursor.fetchall()}
    _settle_planner(cursor)
    statement = prune_statement(tuple(table for table in RUN_HISTORY_TABLES if table in existing))
    cursor.execute(statement, {"before": finished_before, "limit": limit})
    pruned = cursor.rowcount
    if pruned:  # the hours those runs finished in are rolled up again, without them, when next asked for
        postgres_hours.forget_hours(cursor, before=finished_before)
    return pruned


@cache
def prune_statement(tables: Sequence[LiteralString]) -> LiteralString:
    """``prune_finished_runs`` deleting the pruned runs' rows from ``tables`` too."""
    found = queries()
    history = "".join(
        found["prune_history_table"].replace("{table}", table).replace("{alias}", f"gone_{index}")
        for index, table in enumerate(tables)
    )
    return found["prune_finished_runs"].replace("{history}", history)
