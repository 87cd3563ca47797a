"""Listing runs, newest first, a page at a time: the same answers from every backend."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

import conveyor
from conveyor import Conveyor, FakeClock, InvalidArgumentError, RunState
from conveyor.backends import Backend, SqliteBackend
from conveyor.backends.listing import RunQuery

T0 = 1_700_000_000.0


def double(x: int) -> int:
    return x * 2


def refuse(x: int) -> int:
    raise conveyor.NonRetryableError(f"no to {x}")


DOUBLE = conveyor.Flow("double").then(double).build()
REFUSE = conveyor.Flow("refuse").then(refuse).build()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(backend: Backend, clock: FakeClock) -> Conveyor:
    """A runtime over the backend under test, its clock one that moves only when told."""
    return Conveyor(backend, workflows=[DOUBLE, REFUSE], clock=clock)


def record(
    app: Conveyor, clock: FakeClock, count: int, *, workflow: object = DOUBLE, prefix: str = "r"
) -> None:
    """Run ``count`` runs one second apart, ids r00, r01, ..."""
    for number in range(count):
        app.run(workflow, number, workflow_id=f"{prefix}{number:02}")  # type: ignore[arg-type]
        clock.advance(1.0)


def test_runs_are_listed_newest_first_with_what_they_are(app: Conveyor, clock: FakeClock) -> None:
    """Each listed run says its workflow, version, state, times and correlation id."""
    record(app, clock, 3)
    page = app.runs()
    assert [summary.workflow_id for summary in page] == ["r02", "r01", "r00"]
    newest = page.runs[0]
    assert (newest.workflow_name, newest.workflow_version, newest.state) == (
        "double",
        "1",
        RunState.COMPLETED,
    )
    assert newest.created_at == T0 + 2
    assert newest.correlation_id
    assert newest.error_message is None
    assert newest.problem is None
    assert page.next_page is None


def test_paging_lists_every_run_once_even_when_runs_are_recorded_meanwhile(
    app: Conveyor, clock: FakeClock
) -> None:
    """Pages of 4 over 10 runs give 4, 4 and 2; a run recorded between pages appears in none of them."""
    record(app, clock, 10)
    first = app.runs(limit=4)
    record(app, clock, 1, prefix="late")
    second = app.runs(limit=4, page=first.next_page)
    third = app.runs(limit=4, page=second.next_page)
    seen = [summary.workflow_id for page in (first, second, third) for summary in page]
    assert seen == [f"r{number:02}" for number in range(9, -1, -1)]
    assert [len(first), len(second), len(third)] == [4, 4, 2]
    assert third.next_page is None


def test_runs_recorded_at_the_same_moment_page_by_their_id(app: Conveyor) -> None:
    """With equal creation times, the id breaks the tie, so no run is skipped or repeated across pages."""
    for number in range(5):
        app.run(DOUBLE, number, workflow_id=f"same-{number}")
    seen = []
    page = app.runs(limit=2)
    while True:
        seen += [summary.workflow_id for summary in page]
        if page.next_page is None:
            break
        page = app.runs(limit=2, page=page.next_page)
    assert seen == [f"same-{number}" for number in range(4, -1, -1)]


def test_runs_of_one_workflow_or_in_some_states(app: Conveyor, clock: FakeClock) -> None:
    """``workflow`` keeps one workflow's runs, ``state`` one state or several; a failed one has its error."""
    record(app, clock, 2)
    record(app, clock, 2, workflow=REFUSE, prefix="no")
    assert [s.workflow_id for s in app.runs("refuse")] == ["no01", "no00"]
    assert [s.workflow_id for s in app.runs(DOUBLE)] == ["r01", "r00"]
    failed = app.runs(state="failed")
    assert [s.workflow_id for s in failed] == ["no01", "no00"]
    assert failed.runs[0].error_message == "no to 1"
    assert len(app.runs(state=[RunState.FAILED, "completed"])) == 4
    assert len(app.runs("double", state="failed")) == 0
    assert len(app.runs("a-workflow-nobody-registered")) == 0


def test_runs_of_one_version_one_correlation_id_or_recorded_in_a_time_range(
    app: Conveyor, clock: FakeClock
) -> None:
    """``version``, ``correlation_id`` and ``created_after`` / ``created_before`` each narrow the list."""
    double_v2 = conveyor.Flow("double", version="2").then(double).build()
    app.register(double_v2)
    record(app, clock, 3)  # r00..r02 at T0, T0 + 1, T0 + 2
    app.run(double_v2, 5, workflow_id="v2", correlation_id="order-7")  # at T0 + 3
    clock.advance(1.0)
    app.run(DOUBLE, 6, workflow_id="v1-order-7", version="1", correlation_id="order-7")  # at T0 + 4
    assert [s.workflow_id for s in app.runs("double", version="2")] == ["v2"]
    assert [s.workflow_id for s in app.runs(version="1")] == ["v1-order-7", "r02", "r01", "r00"]
    assert [s.workflow_id for s in app.runs(correlation_id="order-7")] == ["v1-order-7", "v2"]
    assert [s.workflow_id for s in app.runs(correlation_id="order-7", version="1")] == ["v1-order-7"]
    assert len(app.runs(correlation_id="nobody's")) == 0
    ranged = app.runs(created_after=T0 + 1, created_before=T0 + 3)
    assert [s.workflow_id for s in ranged] == ["r02", "r01"]  # after is inclusive, before exclusive
    since = dt.datetime.fromtimestamp(T0 + 3, dt.UTC)
    assert [s.workflow_id for s in app.runs(created_after=since)] == ["v1-order-7", "v2"]
    paged = app.runs(created_before=T0 + 3, limit=2)
    rest = app.runs(created_before=T0 + 3, limit=2, page=paged.next_page)
    assert [s.workflow_id for s in (*paged, *rest)] == ["r02", "r01", "r00"]


def test_sqlite_lists_one_correlation_id_from_its_index(tmp_path: Path) -> None:
    """Runs of one correlation id are found by an index, newest first, without sorting."""
    path = tmp_path / "plan.db"
    SqliteBackend(path).close()
    statement, params = RunQuery(correlation_id="order-7", limit=50).sql("?")
    with sqlite3.connect(path) as connection:
        plan = " ".join(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params))
    assert "USING INDEX conveyor_runs_by_correlation_id" in plan
    assert "TEMP B-TREE" not in plan


def test_the_backend_returns_one_run_more_than_asked_to_say_another_page_follows(
    backend: Backend, app: Conveyor, clock: FakeClock
) -> None:
    """list_runs gives limit + 1 rows when more exist: the runtime keeps limit and makes a token."""
    record(app, clock, 3)
    assert len(backend.list_runs(RunQuery(limit=2))) == 3
    assert len(backend.list_runs(RunQuery(limit=3))) == 3
    assert app.runs(limit=3).next_page is None
    assert app.runs(limit=2).next_page is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit must be a whole number from 1 to 1000, not 0"),
        ({"limit": 1001}, "not 1001"),
        ({"limit": True}, "not True"),
        ({"limit": 2.5}, "not 2.5"),
        ({"state": "finished"}, "'finished' is not a run state; the states are pending, running"),
        ({"page": "not-a-token"}, "'not-a-token' is not a page token given by runs()"),
        ({"page": "WzEsMl0"}, "is not a page token"),  # [1,2]: a list, but not a time and an id
        ({"created_after": dt.datetime(2026, 1, 1)}, "created_after must be a timezone-aware datetime"),
        ({"created_before": "yesterday"}, "created_before must be a timezone-aware datetime or epoch"),
        ({"correlation_id": 7}, "correlation_id must be text, not 7"),
    ],
)
def test_a_bad_listing_argument_is_a_clear_error(app: Conveyor, options: dict, message: str) -> None:
    """Each bad argument names itself, instead of listing nothing or everything."""
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        app.runs(**options)


def test_a_run_whose_stored_state_cannot_be_read_is_listed_with_the_problem(tmp_path: Path) -> None:
    """One corrupt row never hides the others, nor stops the listing: it is named in ``problem``."""
    path = tmp_path / "corrupt.db"
    with Conveyor(SqliteBackend(path), workflows=[DOUBLE]) as app:
        app.run(DOUBLE, 1, workflow_id="good")
        app.run(DOUBLE, 2, workflow_id="bad")
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE conveyor_runs SET state = 'bogus' WHERE workflow_id = 'bad'")
        listed = {summary.workflow_id: summary for summary in app.runs()}
    assert listed["bad"].state is None
    assert listed["bad"].problem == "unknown run state 'bogus'"
    assert listed["good"].state is RunState.COMPLETED


@pytest.mark.parametrize("workflow_name", [None, "double"])
def test_sqlite_lists_a_page_from_an_index_without_sorting(tmp_path: Path, workflow_name: str | None) -> None:
    """The newest-first indexes serve a page directly, with or without a workflow, on any page."""
    path = tmp_path / "plan.db"
    SqliteBackend(path).close()
    query = RunQuery(workflow_name=workflow_name, before=(T0, "x"), limit=50)
    statement, params = query.sql("?")
    with sqlite3.connect(path) as connection:
        plan = " ".join(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params))
    assert "USING INDEX conveyor_runs_newest" in plan
    assert "TEMP B-TREE" not in plan
