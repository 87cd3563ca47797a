"""One odd event row stops no reader: the feed, the durable subscribers, the histories and the CLI go on.

Each case changes one stored event with plain SQL, in a real SQLite file or a real PostgreSQL database,
next to runs whose events are fine: a text that is not UTF-8 (no conveyor writes one; another tool or a
damaged file may), a kind this version does not know (a newer version's), data that is not an object.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from conveyor import Conveyor, Event, Flow, task
from conveyor.cli import main
from postgres_support import PostgresDatabase

RUNS = ("a", "b", "c")
EVENTS_PER_RUN = 4


@task
def only_step(value: int) -> int:
    """The one step: a value and one more."""
    return value + 1


FLOW = Flow("odd-events", version="1").then(only_step).build()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file holding three finished runs, four events each."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with Conveyor(url, workflows=[FLOW]) as app:
        for number, workflow_id in enumerate(RUNS):
            app.run(FLOW, number, workflow_id=workflow_id)
    return url


def sql(url: str, statement: str) -> None:
    """Run ``statement`` on the SQLite file of ``url``, behind the backend's back."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.execute(statement)


def history_printed(url: str, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    """``conveyor runs history b OPTIONS --backend URL``, in this process: its exit status and stdout."""
    code = main(["runs", "history", "b", *options, "--backend", url])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return code, printed.out


def delivered_to_a_durable_subscriber(app: Conveyor) -> list[Event]:
    """Every event a new durable subscriber of every kind is handed (a bounded consume), once the feed
    shows them all (PostgreSQL's holds events back while older transactions run anywhere on the server)."""
    deadline = time.monotonic() + 30
    while len(app.events(limit=100).events) < len(RUNS) * EVENTS_PER_RUN and time.monotonic() < deadline:
        time.sleep(0.05)
    got: list[Event] = []
    app.on("*", durable="audit")(got.append)
    app.consume(timeout_seconds=5)
    return got


def test_an_event_whose_text_is_not_utf8_is_read_leniently_and_the_feed_goes_on(sqlite_url: str) -> None:
    """Bytes that are not UTF-8 in one event's data and step: the run's history reads (U+FFFD for what does
    not decode), and the feed every durable subscriber and webhook shares still hands over every event
    (it failed on that row for ever before, so no subscriber got past it)."""
    sql(
        sqlite_url,
        "UPDATE conveyor_events SET data = CAST(x'7b226d657373616765223a22ff227d' AS TEXT), "
        "step_name = CAST(x'6f6eff' AS TEXT) WHERE workflow_id = 'b' AND seq = 3",
    )
    with Conveyor(sqlite_url, workflows=[FLOW]) as app:
        odd = app.history("b")[2]
        assert (odd.kind, odd.step, dict(odd.data)) == ("step.completed", "on\ufffd", {"message": "\ufffd"})
        assert [event.kind for event in app.history("c")][-1] == "run.completed"
        page = app.events(limit=100)
        assert [event.id for event in page.events] == [
            f"{run}#{seq}" for run in RUNS for seq in range(1, EVENTS_PER_RUN + 1)
        ]
        assert len(delivered_to_a_durable_subscriber(app)) == len(RUNS) * EVENTS_PER_RUN


def test_an_event_of_a_newer_versions_kind_and_data_reads_everywhere(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind this version does not know, with data in a form it never writes (a time in milliseconds, a
    list): the history, the feed, a durable subscriber and ``conveyor runs history`` (table and JSON) show
    it as it is; the table printed nothing for the run before (the time overflowed)."""
    sql(
        sqlite_url,
        "UPDATE conveyor_events SET kind = 'run.archived', data = '{\"archived_at\": 1796195575870, "
        "\"where\": [1, 2]}' WHERE workflow_id = 'b' AND seq = 4",
    )
    with Conveyor(sqlite_url, workflows=[FLOW]) as app:
        last = app.history("b")[-1]
        assert last.kind == "run.archived"
        assert dict(last.data) == {"archived_at": 1796195575870, "where": [1, 2]}
        assert "b#4" in {event.id for event in delivered_to_a_durable_subscriber(app)}
    monkeypatch.setenv("COLUMNS", "200")  # a table as a wide terminal prints it
    _, table = history_printed(sqlite_url, capsys)
    assert "run.archived" in table
    assert "archived_at=1796195575870" in table
    _, printed = history_printed(sqlite_url, capsys, "--json")
    assert json.loads(printed)[-1]["data"] == {"archived_at": 1796195575870, "where": [1, 2]}


@pytest.mark.postgres
def test_on_postgresql_an_event_of_an_unknown_kind_or_data_not_an_object_stops_no_reader(
    postgres_database: PostgresDatabase,
) -> None:
    """PostgreSQL's types keep text UTF-8 and data JSON; what can still be odd is a newer version's kind
    and data that is not an object: both read, in the history and in the feed, for every run."""
    import psycopg

    url = postgres_database.url
    with Conveyor(url, workflows=[FLOW]) as app:
        for number, workflow_id in enumerate(RUNS):
            app.run(FLOW, number, workflow_id=workflow_id)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "UPDATE conveyor_events SET kind = 'run.archived', data = '[1, 2]' "
            "WHERE workflow_id = 'b' AND seq = 4"
        )
    with Conveyor(url, workflows=[FLOW]) as app:
        last = app.history("b")[-1]
        assert last.kind == "run.archived"
        assert len(delivered_to_a_durable_subscriber(app)) == len(RUNS) * EVENTS_PER_RUN
