"""The event history in SQLite: appending a run's events inside a write's transaction, and reading them.

Events are numbered per run from the run row's ``event_seq`` (bumped in the same transaction, so two
writers of one run never take the same number); ``event_id``, the table's rowid, orders the durable feed:
SQLite commits one write at a time, so ids are handed out in commit order and a reader never skips one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from conveyor.backends.history import data_text, numbered
from conveyor.core.history import EventRow

_COLUMNS = "workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id, workflow_name, data"
_BUMP = (
    "UPDATE conveyor_runs SET event_seq = event_seq + ? WHERE workflow_id = ? "
    "RETURNING event_seq, owner, correlation_id, workflow_name, created_at"
)
_INSERT = f"INSERT INTO conveyor_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_HISTORY = f"SELECT {_COLUMNS} FROM conveyor_events WHERE workflow_id = ? AND seq > ? ORDER BY seq LIMIT ?"
_FEED = f"SELECT event_id, {_COLUMNS} FROM conveyor_events WHERE event_id > ? ORDER BY event_id LIMIT ?"


def append_events(
    cursor: sqlite3.Cursor,
    workflow_id: str,
    rows: Sequence[EventRow],
    written: list[tuple[Any, ...]],
    *,
    by_owner: bool = True,
) -> None:
    """Append ``rows`` to the run's history within the caller's transaction; add what was stored to
    ``written``. ``by_owner`` False records no worker (a request from outside, such as a cancel)."""
    if not rows:
        return
    found = cursor.execute(_BUMP, (len(rows), workflow_id)).fetchone()
    if found is not None:  # (no such run: nothing to number the events by)
        insert_events(cursor, workflow_id, rows, found, written, by_owner=by_owner)


def insert_events(
    cursor: sqlite3.Cursor,
    workflow_id: str,
    rows: Sequence[EventRow],
    numbered_by: Sequence[Any],
    written: list[tuple[Any, ...]],
    *,
    by_owner: bool = True,
) -> None:
    """Insert ``rows``, numbered by what the write that bumped the run's ``event_seq`` by ``len(rows)``
    returned: (event_seq, owner, correlation_id, workflow_name, created_at)."""
    last_seq, owner, correlation_id, workflow_name, created_at = numbered_by
    worker = owner if by_owner and type(owner) is str else None
    stored = numbered(
        workflow_id, rows, int(last_seq), worker, correlation_id or "", workflow_name or "", created_at
    )
    if len(stored) == 1:
        cursor.execute(_INSERT, (*stored[0][:9], data_text(stored[0][9])))
    else:
        cursor.executemany(_INSERT, [(*row[:9], data_text(row[9])) for row in stored])
    written.extend(stored)


def read_history(
    connection: sqlite3.Connection, workflow_id: str, after_seq: int, limit: int
) -> list[tuple[Any, ...]]:
    """The run's stored events after ``after_seq``, oldest first, at most ``limit``."""
    return connection.execute(_HISTORY, (workflow_id, after_seq, limit)).fetchall()


def read_feed(
    connection: sqlite3.Connection, after: str | None, limit: int
) -> tuple[list[tuple[Any, ...]], str | None]:
    """Every run's events after position ``after`` (None: from the start), in commit order, and the
    position after the last one read (``after`` itself when there is nothing new)."""
    start = int(after) if after else 0
    found = connection.execute(_FEED, (start, limit)).fetchall()
    if not found:
        return [], after
    return [row[1:] for row in found], str(found[-1][0])
