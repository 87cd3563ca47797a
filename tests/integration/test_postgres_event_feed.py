"""PostgreSQL's event feed never skips an event committed late: a transaction that began before another
committed holds the feed back until it ends, then its events come first (commit order by transaction)."""

from __future__ import annotations

import time

import psycopg
import pytest

from conveyor import Conveyor, Flow, task
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres_sql import queries
from postgres_support import PostgresDatabase

pytestmark = pytest.mark.postgres


@task
def only_step(value: int) -> int:
    return value + 1


FLOW = Flow("feed", version="1").then(only_step).build()


def drain(app: Conveyor, position: str | None, wanted: int) -> tuple[list[str], str | None]:
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while len(seen) < wanted and time.monotonic() < deadline:
        page = app.events(after=position)
        seen += [event.id for event in page.events]
        position = page.position
        if not page.events:
            time.sleep(0.05)
    return seen, position


def test_an_event_of_a_transaction_still_in_flight_is_read_before_later_ones_once_it_commits(
    postgres_database: PostgresDatabase,
) -> None:
    with PostgresBackend(postgres_database.url) as backend:
        app = Conveyor(backend, workflows=[FLOW])
        app.run("feed", 1, workflow_id="early")
        seen, position = drain(app, None, 4)
        assert seen == ["early#1", "early#2", "early#3", "early#4"]
        with psycopg.connect(postgres_database.url) as slow:
            with slow.transaction():
                slow.execute(  # an older transaction appends an event and stays open...
                    queries()["append_events"],
                    {
                        "workflow_id": "early",
                        "events": '[["operator.action", null, null, 1.0, {"action": "note"}, false]]',
                        "by_owner": False,
                    },
                )
                app.run("feed", 2, workflow_id="late")  # ...while a newer one commits
                time.sleep(0.2)
                held = app.events(after=position)
                assert held.events == ()  # the newer events wait behind the open transaction
                assert held.position == position
            seen, position = drain(app, position, 5)
        assert seen == ["early#5", "late#1", "late#2", "late#3", "late#4"]
