"""The analytics of a wide window on PostgreSQL, from hourly rollups (schema 16) instead of every run.

A window that holds whole settled hours (hours that ended at least :data:`SETTLE_SECONDS` ago) is read in
three parts: the rollups of its whole UTC days and of the hours around them, written the first time they
are asked for (the queries of ``sql/postgres/analytics_hours.sql``) and added up in the database, and the
window's two ends around them, from the runs themselves. The parts meet as duration histograms (see the
schema's comment): counts, attempts and totals are exact; a percentile is the middle of the bucket that
holds it, within 2.2 % of the duration at that rank. A window with no whole settled hour (the last
minutes, a test's runs) is computed exactly, run by run, by :mod:`conveyor.backends.postgres_analytics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.backends.analytics_rows import run_figures_from_row, step_figures_from_row
from conveyor.backends.postgres_sql import queries
from conveyor.core.analytics import FINAL_STATE_NAMES, AnalyticsQuery, RunFigures, StepFigures

if TYPE_CHECKING:
    import psycopg

    Cursor = psycopg.Cursor[tuple[Any, ...]]

HOUR = 3600
DAY = 86400
SETTLE_SECONDS = 300.0
"""How long after an hour ends its rollups may be written: a run that finishes in it commits by then."""
BUCKETS_PER_DOUBLING = 16
"""Histogram resolution: 16 buckets per doubling of a duration, each 4.4 % wide (see the schema)."""
_STATES = len(FINAL_STATE_NAMES)


@dataclass(frozen=True, slots=True)
class HourSpan:
    """The whole settled hours of a window, ``[first, last)`` (epoch seconds, multiples of an hour), and
    the whole UTC days among them, ``[day_first, day_last)`` (both ``first`` when there is none)."""

    first: int
    last: int
    day_first: int
    day_last: int

    def periods(self) -> list[tuple[int, int, int]]:
        """The (length, first, last) of the rollups that cover the span: its days, the hours around them."""
        found = [(DAY, self.day_first, self.day_last), (HOUR, self.first, self.day_first)]
        found.append((HOUR, self.day_last, self.last))
        return [period for period in found if period[2] > period[1]]


def settled_hours(query: AnalyticsQuery, now: float) -> HourSpan | None:
    """The whole hours of ``query``'s window that had ended :data:`SETTLE_SECONDS` before ``now``; None
    when there is none (the window is then computed run by run)."""
    first = math.ceil(query.since / HOUR) * HOUR
    last = min(math.floor(query.until / HOUR), math.floor((now - SETTLE_SECONDS) / HOUR)) * HOUR
    if last <= first:
        return None
    day_first, day_last = math.ceil(first / DAY) * DAY, math.floor(last / DAY) * DAY
    if day_last <= day_first:
        day_first = day_last = first
    return HourSpan(first, last, day_first, day_last)


def bucket_middle(bucket: int) -> float:
    """The duration (seconds) a histogram bucket stands for: its geometric middle (0 for bucket 0)."""
    if bucket <= 0:
        return 0.0
    return float(1e-6 * 2.0 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def histogram_percentiles(histogram: dict[int, int], fractions: Sequence[float]) -> list[float]:
    """The ``fractions`` percentiles of a histogram (bucket -> count) by nearest rank; 0 when empty."""
    total = sum(histogram.values())
    if not total:
        return [0.0 for _ in fractions]
    ordered = sorted(histogram.items())
    found = []
    for fraction in fractions:
        rank, seen = max(1, math.ceil(fraction * total)), 0
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                found.append(bucket_middle(bucket))
                break
    return found


@dataclass(slots=True)
class _RunTally:
    by_state: list[int] = field(default_factory=lambda: [0] * _STATES)
    executed: int = 0
    retried: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def add_buckets(self, buckets: Iterable[int | None], counts: Iterable[int]) -> None:
        for bucket, count in zip(buckets, counts, strict=True):
            if bucket is not None:
                self.histogram[bucket] = self.histogram.get(bucket, 0) + int(count)


@dataclass(slots=True)
class _StepTally(_RunTally):
    executions: int = 0
    attempts: int = 0
    failed: int = 0
    timed: int = 0
    total: float = 0.0


def _params(query: AnalyticsQuery, hours: HourSpan) -> dict[str, Any]:
    names = None if query.workflow_names is None else list(query.workflow_names)
    return {
        "since": query.since,
        "until": query.until,
        "first": hours.first,
        "last": hours.last,
        "day_first": hours.day_first,
        "day_last": hours.day_last,
        "workflow_names": names,
    }


def all_written(cursor: Cursor, hours: HourSpan) -> bool:
    """Whether every day and hour covering ``hours`` has its rollups written (what a read-only reader,
    which may write none, can use)."""
    found = queries()
    for seconds, first, last in hours.periods():
        cursor.execute(found["count_hours"], {"seconds": seconds, "first": first, "last": last})
        row = cursor.fetchone()
        if row is None or int(row[0]) != (last - first) // seconds:
            return False
    return True


def write_hours(cursor: Cursor, hours: HourSpan) -> int:
    """Write the rollups of the days and hours covering ``hours`` that have none yet (in the caller's
    transaction); how many it wrote. Most calls find them all written, by one count over a primary key
    per kind of period."""
    found, written = queries(), 0
    for seconds, first, last in hours.periods():
        span = {"seconds": seconds, "first": first, "last": last}
        cursor.execute(found["count_hours"], span)
        row = cursor.fetchone()
        if row is not None and int(row[0]) == (last - first) // seconds:
            continue
        cursor.execute(found["mark_hours"], span)
        marked = sorted(float(hour) for (hour,) in cursor.fetchall())
        if marked:
            chosen = {"seconds": seconds, "hours": marked, "low": marked[0], "high": marked[-1] + seconds}
            cursor.execute(found["write_run_hours"], chosen)
            cursor.execute(found["write_step_hours"], chosen)
            written += len(marked)
    return written


def _add_runs(tally: _RunTally, states: Sequence[Any], executed: Any, retried: Any) -> None:
    tally.by_state = [mine + int(theirs) for mine, theirs in zip(tally.by_state, states, strict=True)]
    tally.executed += int(executed)
    tally.retried += int(retried)


def run_figures(
    cursor: Cursor, query: AnalyticsQuery, hours: HourSpan, *, write: bool = True
) -> list[RunFigures]:
    """Each workflow's figures over ``query``'s window, its whole hours ``hours`` read from the rollups
    (written first where missing, unless ``write`` is False: the caller checked they all are)."""
    if write:
        write_hours(cursor, hours)
    params = _params(query, hours)
    tallies: dict[str, _RunTally] = {}
    cursor.execute(queries()["run_hours"], params)
    for name, bucket, first, *rest in cursor.fetchall():
        tally = tallies.setdefault(name, _RunTally())
        if bucket is None:  # the workflow's counts
            _add_runs(tally, [first, *rest[: _STATES - 1]], rest[_STATES - 1], rest[_STATES])
        else:
            tally.add_buckets([bucket], [first])
    cursor.execute(queries()["run_edges"], params)
    for name, bucket, runs, *states_and_steps in cursor.fetchall():
        tally = tallies.setdefault(name, _RunTally())
        _add_runs(tally, states_and_steps[:_STATES], *states_and_steps[_STATES:])
        tally.add_buckets([bucket], [runs])
    rows = []
    for name, tally in sorted(tallies.items()):
        if sum(tally.by_state):
            p50, p95, p99 = histogram_percentiles(tally.histogram, (0.5, 0.95, 0.99))
            rows.append((name, *tally.by_state, p50, p95, p99, tally.executed, tally.retried))
    return [run_figures_from_row(row) for row in rows]


def _add_steps(tally: _StepTally, executions: Any, attempts: Any, retried: Any, failed: Any, timed: Any,
               total: Any) -> None:  # fmt: skip
    tally.executions += int(executions)
    tally.attempts += int(attempts)
    tally.retried += int(retried)
    tally.failed += int(failed)
    tally.timed += int(timed)
    tally.total += float(total)


def step_figures(
    cursor: Cursor, query: AnalyticsQuery, hours: HourSpan, *, write: bool = True
) -> list[StepFigures]:
    """Each (workflow, step)'s figures over ``query``'s window, its whole hours read from the rollups
    (written first where missing, unless ``write`` is False)."""
    if write:
        write_hours(cursor, hours)
    params = _params(query, hours)
    tallies: dict[tuple[str, str], _StepTally] = {}
    cursor.execute(queries()["step_hours"], params)
    for workflow, step, bucket, first, *rest in cursor.fetchall():
        tally = tallies.setdefault((workflow, step), _StepTally())
        if bucket is None:  # the step's counts
            _add_steps(tally, first, *rest)
        else:
            tally.add_buckets([bucket], [first])
    cursor.execute(queries()["step_edges"], params)
    for workflow, step, bucket, executions, attempts, retried, failed, timed, total in cursor.fetchall():
        tally = tallies.setdefault((workflow, step), _StepTally())
        _add_steps(tally, executions, attempts, retried, failed, timed, total)
        tally.add_buckets([bucket], [timed])
    rows = []
    for (workflow, step), tally in sorted(tallies.items()):
        if tally.executions:
            p50, p95 = histogram_percentiles(tally.histogram, (0.5, 0.95))
            rows.append(
                (workflow, step, tally.executions, tally.attempts, tally.retried, tally.failed, tally.timed,
                 tally.total, p50, p95)
            )  # fmt: skip
    return [step_figures_from_row(row) for row in rows]


def forget_hours(cursor: Cursor, *, before: float) -> None:
    """Drop the rollups of the hours starting before ``before`` (pruning deleted runs finished in them)."""
    cursor.execute(queries()["forget_hours"], {"before": before})
