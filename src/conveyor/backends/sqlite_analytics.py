"""The analytics and retention of :class:`~conveyor.backends.sqlite.SqliteBackend`, over finished runs.

The runs finished in a window come off ``conveyor_runs_finished`` (``finished_at``, set by the trigger of
schema 13 as each run finishes); their steps are joined from ``conveyor_steps`` by its key. Percentiles are
by nearest rank, as every backend computes them: the smallest duration whose rank (``row_number`` in
duration order) is at least ``p * n``. Each function runs on the caller's cursor, inside its transaction.
"""

from __future__ import annotations

import sqlite3

from conveyor.backends.analytics_rows import run_figures_from_row, step_figures_from_row
from conveyor.backends.retention import RUN_HISTORY_TABLES
from conveyor.core.analytics import FINAL_STATE_NAMES, AnalyticsQuery, RunFigures, StepFigures

_FINAL = ", ".join(f"'{name}'" for name in FINAL_STATE_NAMES)
_NUMBER = "IN ('integer', 'real')"

_RUN_FIGURES = f"""
WITH finished AS (
    SELECT workflow_id, workflow_name, state, finished_at - created_at AS duration,
           row_number() OVER (PARTITION BY workflow_name ORDER BY finished_at - created_at) AS rank,
           count(*) OVER (PARTITION BY workflow_name) AS n
      FROM conveyor_runs
     WHERE finished_at >= :since AND finished_at < :until AND state IN ({_FINAL}){{names}}
),
executions AS (
    SELECT f.workflow_name, count(*) AS executions, sum(s.attempts > 1) AS retried
      FROM finished AS f JOIN conveyor_steps AS s ON s.workflow_id = f.workflow_id
     WHERE typeof(s.attempts) = 'integer' AND s.attempts > 0
     GROUP BY f.workflow_name
)
SELECT f.workflow_name, {", ".join(f"sum(f.state = '{name}')" for name in FINAL_STATE_NAMES)},
       min(CASE WHEN f.rank >= 0.50 * f.n THEN f.duration END),
       min(CASE WHEN f.rank >= 0.95 * f.n THEN f.duration END),
       min(CASE WHEN f.rank >= 0.99 * f.n THEN f.duration END),
       coalesce(e.executions, 0), coalesce(e.retried, 0)
  FROM finished AS f LEFT JOIN executions AS e ON e.workflow_name = f.workflow_name
 GROUP BY f.workflow_name
"""

_STEP_FIGURES = f"""
WITH executed AS (
    SELECT r.workflow_name, s.step_name, s.state, s.attempts,
           CASE WHEN typeof(s.started_at) {_NUMBER} AND typeof(s.finished_at) {_NUMBER}
                THEN s.finished_at - s.started_at END AS duration
      FROM conveyor_runs AS r JOIN conveyor_steps AS s ON s.workflow_id = r.workflow_id
     WHERE r.finished_at >= :since AND r.finished_at < :until AND r.state IN ({_FINAL}){{names}}
       AND typeof(s.attempts) = 'integer' AND s.attempts > 0
),
ranked AS (
    SELECT workflow_name, step_name, state, attempts, duration,
           row_number() OVER (PARTITION BY workflow_name, step_name ORDER BY duration NULLS LAST) AS rank,
           count(duration) OVER (PARTITION BY workflow_name, step_name) AS n
      FROM executed
)
SELECT workflow_name, step_name, count(*), sum(attempts), sum(attempts > 1), sum(state = 'failed'),
       count(duration), coalesce(sum(duration), 0.0),
       coalesce(min(CASE WHEN duration IS NOT NULL AND rank >= 0.50 * n THEN duration END), 0.0),
       coalesce(min(CASE WHEN duration IS NOT NULL AND rank >= 0.95 * n THEN duration END), 0.0)
  FROM ranked
 GROUP BY workflow_name, step_name
"""

_PRUNABLE = f"""
SELECT r.workflow_id FROM conveyor_runs AS r
 WHERE r.finished_at < ? AND r.state IN ({_FINAL})
   AND (r.parent_id IS NULL OR NOT EXISTS (
           SELECT 1 FROM conveyor_runs AS parent
            WHERE parent.workflow_id = r.parent_id
              AND parent.state IN ('pending', 'running', 'compensating')))
 ORDER BY r.finished_at
 LIMIT ?
"""
"""The oldest finished runs: a finished child whose parent has not finished is kept (its parent reads it)."""


def _bound(query: AnalyticsQuery, sql: str, column: str) -> tuple[str, dict[str, object]]:
    """``sql`` with ``query``'s workflow names as a condition on ``column``, and its parameters."""
    params: dict[str, object] = {"since": query.since, "until": query.until}
    names = ""
    if query.workflow_names is not None:
        marks = []
        for index, name in enumerate(query.workflow_names):
            params[f"name{index}"] = name
            marks.append(f":name{index}")
        names = f" AND {column} IN ({', '.join(marks) or 'NULL'})"
    return sql.replace("{names}", names), params


def run_figures(cursor: sqlite3.Cursor, query: AnalyticsQuery) -> list[RunFigures]:
    """Each workflow's figures over the runs finished in ``query``'s window."""
    statement, params = _bound(query, _RUN_FIGURES, "workflow_name")
    return [run_figures_from_row(row) for row in cursor.execute(statement, params).fetchall()]


def step_figures(cursor: sqlite3.Cursor, query: AnalyticsQuery) -> list[StepFigures]:
    """Each (workflow, step)'s figures over the runs finished in ``query``'s window."""
    statement, params = _bound(query, _STEP_FIGURES, "r.workflow_name")
    return [step_figures_from_row(row) for row in cursor.execute(statement, params).fetchall()]


def prune_finished_runs(cursor: sqlite3.Cursor, *, finished_before: float, limit: int) -> int:
    """Delete up to ``limit`` runs finished before ``finished_before``, with their rows in every table of
    :data:`~conveyor.backends.retention.RUN_HISTORY_TABLES` the database has; how many."""
    ids = [row[0] for row in cursor.execute(_PRUNABLE, (finished_before, limit)).fetchall()]
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    listed = ", ".join("?" * len(RUN_HISTORY_TABLES))
    existing = {
        row[0]
        for row in cursor.execute(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({listed})", RUN_HISTORY_TABLES
        )
    }
    for table in RUN_HISTORY_TABLES:
        if table in existing:
            cursor.execute(f"DELETE FROM {table} WHERE workflow_id IN ({marks})", ids)
    cursor.execute(f"DELETE FROM conveyor_runs WHERE workflow_id IN ({marks})", ids)
    return cursor.rowcount
