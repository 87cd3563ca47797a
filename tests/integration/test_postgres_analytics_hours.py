"""PostgreSQL's hourly rollups of the analytics (schema 16): a window of whole settled hours reads them,
and its figures are the exact ones (counts, attempts, totals) with percentiles within a bucket's half-width;
an hour's rollups go when one of its runs reopens, when a run finishes late into it, and when it is pruned.

Each scenario runs twice, on an in-memory backend (which computes everything run by run) and on
PostgreSQL, with clocks that tick alike, so the two must agree."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, FakeClock, Flow, NonRetryableError, RetryPolicy, task
from conveyor.backends.memory import InMemoryBackend
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres_hours import HOUR, settled_hours
from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures

pytestmark = pytest.mark.postgres

T0 = 1_700_002_800.0  # an hour's start, long settled
HALF_BUCKET = 2 ** (1 / 32) - 1  # a bucket's middle is within 2.2 % of any duration in it


class Twins:
    """The same workflows on memory and on PostgreSQL, each runtime with its own clock."""

    def __init__(self, url: str) -> None:
        self.memory = self._app(InMemoryBackend())
        self.postgres = self._app(PostgresBackend(url))
        self.fail: set[str] = set()

    def _app(self, backend: Any) -> Conveyor:
        clock = FakeClock(T0)
        attempts: dict[str, int] = {}

        @task
        def prepare(order: dict[str, Any]) -> dict[str, Any]:
            clock.advance(order["seconds"] / 4)
            return order

        @task(retries=RetryPolicy(max_retries=1, initial_delay_secs=1.0))
        def work(order: dict[str, Any]) -> dict[str, Any]:
            clock.advance(order["seconds"])
            attempts[order["id"]] = attempts.get(order["id"], 0) + 1
            if order["id"] in self.fail:
                raise NonRetryableError("refused")
            if order.get("flaky") and attempts[order["id"]] == 1:
                raise ConnectionError("flaky")
            return order

        app = Conveyor(backend, clock=clock)
        app.register(Flow("orders").then(prepare).then(work).build())
        return app

    def each(self) -> Iterator[Conveyor]:
        yield self.memory
        yield self.postgres

    def run(self, number: int, seconds: float, **order: Any) -> None:
        for app in self.each():
            app.run("orders", {"id": f"o{number}", "seconds": seconds, **order}, workflow_id=f"o{number}")

    def advance(self, seconds: float) -> None:
        for app in self.each():
            app.clock.advance(seconds)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.memory.close()
        self.postgres.close()


@pytest.fixture
def twins(postgres_database: Any) -> Iterator[Twins]:
    made = Twins(postgres_database.url)
    try:
        yield made
    finally:
        made.close()


def three_hours_of_runs(twins: Twins) -> None:
    """120 runs over three hours from T0: durations from 10 ms to 100 s, some flaky, some failing."""
    for number in range(120):
        seconds = 0.01 * 10 ** (4 * ((number * 37) % 120) / 120)
        if number % 11 == 0:
            twins.fail.add(f"o{number}")
        twins.run(number, seconds, flaky=number % 7 == 0)
        twins.advance(3 * HOUR / 120)


def rows_written(url: str, table: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        found = connection.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
    assert found is not None
    return int(found[0])


def assert_close(exact: float, approximate: float) -> None:
    assert math.isclose(approximate, exact, rel_tol=HALF_BUCKET * 1.01, abs_tol=1e-9), (exact, approximate)


def assert_runs_agree(exact: list[RunFigures], rolled: list[RunFigures]) -> None:
    assert [(f.workflow_name, f.by_state, f.step_executions, f.retried_steps) for f in rolled] == [
        (f.workflow_name, f.by_state, f.step_executions, f.retried_steps) for f in exact
    ]
    for mine, theirs in zip(exact, rolled, strict=True):
        for fraction in ("duration_p50", "duration_p95", "duration_p99"):
            assert_close(getattr(mine, fraction), getattr(theirs, fraction))


def assert_steps_agree(exact: list[StepFigures], rolled: list[StepFigures]) -> None:
    def counts(figures: StepFigures) -> tuple[Any, ...]:
        return (
            figures.workflow_name,
            figures.step_name,
            figures.executions,
            figures.attempts,
            figures.retried,
            figures.failed,
            figures.timed,
        )

    assert [counts(f) for f in rolled] == [counts(f) for f in exact]
    for mine, theirs in zip(exact, rolled, strict=True):
        assert math.isclose(mine.total_seconds, theirs.total_seconds, rel_tol=1e-9)
        assert_close(mine.duration_p50, theirs.duration_p50)
        assert_close(mine.duration_p95, theirs.duration_p95)


def assert_agree(twins: Twins, query: AnalyticsQuery) -> None:
    assert_runs_agree(twins.memory.backend.run_figures(query), twins.postgres.backend.run_figures(query))
    assert_steps_agree(twins.memory.backend.step_figures(query), twins.postgres.backend.step_figures(query))


def test_a_window_of_whole_settled_hours_reads_rollups_that_agree_with_every_run(
    twins: Twins, postgres_database: Any
) -> None:
    three_hours_of_runs(twins)
    query = AnalyticsQuery(T0 - 1234.5, T0 + 3 * HOUR + 77.0)  # ragged ends, read run by run
    assert settled_hours(query, T0 + 10 * HOUR) is not None
    assert_agree(twins, query)
    assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 3
    assert rows_written(postgres_database.url, "conveyor_run_hours") == 3
    assert_agree(twins, query)  # read again from the rollups written
    one = AnalyticsQuery(T0 + HOUR, T0 + 2 * HOUR, workflow_names=("orders",))
    assert_agree(twins, one)


def test_a_run_reopened_drops_its_hour_which_is_rolled_up_again_without_it(
    twins: Twins, postgres_database: Any
) -> None:
    three_hours_of_runs(twins)
    query = AnalyticsQuery(T0, T0 + 3 * HOUR)
    assert_agree(twins, query)
    twins.fail.clear()
    for app in twins.each():
        assert app.retry("o0").is_completed()  # failed in the first hour; completes now, hours later
    assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 2
    assert_agree(twins, query)
    assert_agree(twins, AnalyticsQuery(T0, T0 + 4 * HOUR))


def test_a_run_finishing_late_into_a_rolled_up_hour_drops_that_hour(
    twins: Twins, postgres_database: Any
) -> None:
    three_hours_of_runs(twins)
    query = AnalyticsQuery(T0, T0 + 3 * HOUR)
    assert_agree(twins, query)
    for app in twins.each():  # a process whose clock runs two hours behind the others
        app.clock.advance(-2 * HOUR)  # type: ignore[attr-defined]
    twins.run(500, 3.0)
    assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 2
    assert_agree(twins, query)


def test_pruning_drops_the_rollups_of_the_hours_it_deleted_runs_from(
    twins: Twins, postgres_database: Any
) -> None:
    three_hours_of_runs(twins)
    query = AnalyticsQuery(T0, T0 + 3 * HOUR)
    assert_agree(twins, query)
    for backend in (twins.memory.backend, twins.postgres.backend):
        assert backend.prune_finished_runs(finished_before=T0 + 1.5 * HOUR, limit=1000) > 0
    assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 1
    assert_agree(twins, query)


def test_a_window_of_days_reads_each_whole_day_and_the_hours_around_it(
    twins: Twins, postgres_database: Any
) -> None:
    """Fifty hours of runs from T0 (23:00 UTC) hold two whole UTC days: they are rolled up as days, the
    hour at either side as hours; the figures agree, and a run reopened drops its day too."""
    for number in range(100):
        twins.run(number, 0.05 * (1 + number % 13), flaky=number % 5 == 0)
        twins.advance(HOUR / 2)
    query = AnalyticsQuery(T0 - 10.0, T0 + 50 * HOUR + 10.0)
    assert_agree(twins, query)
    with psycopg.connect(postgres_database.url, autocommit=True) as connection:
        periods = connection.execute(
            "SELECT seconds, count(*) FROM conveyor_analytics_hours GROUP BY seconds ORDER BY seconds"
        ).fetchall()
    assert periods == [(3600, 2), (86400, 2)]  # the days' hours are not rolled up on their own
    twins.fail.add("o20")  # finished in the day; it is retried and now fails, days later
    for app in twins.each():
        app.retry("o20", from_step="work")
    assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 3
    assert_agree(twins, query)


def test_a_read_only_reader_writes_no_rollup_and_still_gets_the_figures(
    twins: Twins, postgres_database: Any
) -> None:
    """``conveyor stats`` opens the backend read-only: with no rollup written it reads the runs one by one
    (writing nothing); once a writer has written them, it reads them."""
    three_hours_of_runs(twins)
    query = AnalyticsQuery(T0, T0 + 3 * HOUR)
    with PostgresBackend(postgres_database.url, read_only=True) as reader:
        assert_runs_agree(twins.memory.backend.run_figures(query), reader.run_figures(query))
        assert_steps_agree(twins.memory.backend.step_figures(query), reader.step_figures(query))
        assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 0
        twins.postgres.backend.run_figures(query)  # a writer rolls the hours up
        assert rows_written(postgres_database.url, "conveyor_analytics_hours") == 3
        assert_runs_agree(twins.memory.backend.run_figures(query), reader.run_figures(query))
