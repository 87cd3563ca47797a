"""The event history in SQLite: appending a run's events inside a write's transaction, and reading them.

Events are numbered per run from the run row's ``event_seq`` (bumped in the same transaction, so two
writers of one run never take the same number); ``event_id``, the table's rowid, orders the durable feed:
SQLite commits one write at a time, so ids are handed out in commit order and a reader never skips one.

A row whose text is not UTF-8 (no conveyor writes one; another tool, or a damaged file, may) is read again
with its text decoded leniently (U+FFFD for what does not decode): one such row must never stop the reads
of the feed, which every durable subscriber and webhook shares, nor of the rest of its run's history.
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
_TEXT_COLUMNS = frozenset(
    {"workflow_id", "kind", "step_name", "worker", "correlation_id", "workflow_name", "data"}
)
_AS_BYTES = ", ".join(
    f"CAST({name} AS BLOB)" if name in _TEXT_COLUMNS else name for name in _COLUMNS.split(", ")
)
_HISTORY_AS_BYTES = _HISTORY.replace(_COLUMNS, _AS_BYTES, 1)
_FEED_AS_BYTES = _FEED.replace(_COLUMNS, _AS_BYTES, 1)
_TEXT_INDEXES = tuple(index for index, name in enumerate(_COLUMNS.split(", ")) if name in _TEXT_COLUMNS)


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
    params = (workflow_id, after_seq, limit)
    try:
        return connection.execute(_HISTORY, params).fetchall()
    except sqlite3.OperationalError as exc:
        if not _undecodable(exc):
            raise
    return [_decoded(row) for row in connection.execute(_HISTORY_AS_BYTES, params).fetchall()]


def read_feed(
    connection: sqlite3.Connection, after: str | None, limit: int
) -> tuple[list[tuple[Any, ...]], str | None]:
    """Every run's events after position ``after`` (None: from the start), in commit order, and the
    position after the last one read (``after`` itself when there is nothing new)."""
    start = int(after) if after else 0
    try:
        found = connection.execute(_FEED, (start, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if not _undecodable(exc):
            raise
        found = [(row[0], *_decoded(row[1:])) for row in connection.execute(_FEED_AS_BYTES, (start, limit))]
    if not found:
        return [], after
    return [row[1:] for row in found], str(found[-1][0])


def _undecodable(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is the sqlite3 module failing to decode a stored text as UTF-8."""
    return "decode" in str(exc).lower()


def _decoded(row: Sequence[Any]) -> tuple[Any, ...]:
    """A history row read with its text columns as bytes, the text decoded leniently (U+FFFD)."""
    values = list(row)
    for index in _TEXT_INDEXES:
        value = values[index]
        if isinstance(value, bytes):
            values[index] = value.decode("utf-8", "replace")
    return tuple(values)
