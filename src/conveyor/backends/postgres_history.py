"""The event history on PostgreSQL: the events a statement carries, what it returns of them, and the feed.

The statements that change a run append its events themselves (see ``queries.sql``): they take the events
as one jsonb list and number them from the run's ``event_seq``. What they return (the last number, the
run's owner, correlation id, name and creation time) is enough to rebuild the same events in this process
for its listeners, without reading them back. :class:`PostgresHistory`, the backend's part of it, does so,
appends an event about a whole run, reads the history and the feed back, and keeps durable subscribers'
cursors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.backends import postgres_cursors as cursor_sql
from conveyor.backends.cursors import CursorClaim
from conveyor.backends.history import EventPage, as_events, numbered
from conveyor.backends.postgres_connections import PostgresConnections
from conveyor.core.history import FINISHED_KINDS, Event, EventKind, EventRow, run_event
from conveyor.core.records import RunRecord
from conveyor.errors import InvalidArgumentError

if TYPE_CHECKING:
    from conveyor.backends.postgres_connections import Cursor

NO_EVENTS = "[]"
_START = ("0", 0)  # the feed's position before its first event: (transaction id, event id)


def events_json(rows: Sequence[EventRow]) -> str:
    """``rows`` as the jsonb list a statement takes: [kind, step, attempt, at, data, finishes the run]."""
    if not rows:
        return NO_EVENTS
    return orjson.dumps(
        [(kind, step, attempt, at, data, kind in FINISHED_KINDS) for kind, step, attempt, at, data in rows]
    ).decode()


def stored_rows(
    rows: Sequence[EventRow], returned: Sequence[Any], *, worker: bool = True
) -> list[tuple[Any, ...]]:
    """What a statement stored of ``rows``, rebuilt from what it returned: (workflow_id, event_seq, owner,
    correlation_id, workflow_name, created_at)."""
    workflow_id, last_seq, owner, correlation_id, workflow_name, created_at = returned[:6]
    return numbered(
        workflow_id,
        rows,
        int(last_seq),
        owner if worker else None,
        correlation_id or "",
        workflow_name or "",
        created_at,
    )


def feed_position(after: str | None) -> tuple[str, int]:
    """The feed position ``after`` names ("<tx>:<event_id>"), the start for None; ValueError if malformed."""
    if not after:
        return _START
    tx, _, event_id = after.partition(":")
    if not tx.isdigit() or not event_id.isdigit():
        raise ValueError(f"not a position in the PostgreSQL event feed: {after!r}")
    return tx, int(event_id)


def position_after(row: Sequence[Any]) -> str:
    """The feed position just after ``row`` of ``read_feed`` (its last two columns: tx, event_id)."""
    return f"{row[-2]}:{row[-1]}"


class PostgresHistory(PostgresConnections):
    """The event history's part of the backend: an event about a whole run appended, what a statement
    stored handed to this process's listeners, the history and the feed read back, and durable
    subscribers' cursors."""

    def _publish(self, rows: Sequence[EventRow], returned: Sequence[Any], *, worker: bool = True) -> None:
        """Hand the events a statement stored (``rows``, numbered by what it ``returned``) to listeners."""
        if rows and self.wants_events:
            self.deliver(stored_rows(rows, returned, worker=worker))

    def _publish_taken_over(self, record: RunRecord, previous: str, seq: int, at: float) -> None:
        if self.wants_events and self.records_history:
            data = {"previous_owner": previous, "recoveries": record.recoveries}
            kind = EventKind.RUN_TAKEN_OVER.value
            self.deliver([_stored_run_event(record, seq, kind, at, record.owner, data)])

    def _publish_dead_lettered(self, record: RunRecord, previous: str, seq: int) -> None:
        if self.wants_events and self.records_history:
            data = {"previous_owner": previous, "recoveries": record.recoveries}
            kind = EventKind.RUN_DEAD_LETTERED.value
            self.deliver([_stored_run_event(record, seq, kind, record.updated_at, None, data)])

    def _append(
        self,
        cursor: Cursor,
        workflow_id: str,
        kind: EventKind,
        data: dict[str, Any] | None = None,
        *,
        by_owner: bool = False,
    ) -> None:
        """Append one event about the run as a whole, in the caller's transaction, and publish it."""
        if not self.records_history:
            return
        rows = [run_event(kind, self.now(), data)]
        params = {"workflow_id": workflow_id, "events": events_json(rows), "by_owner": by_owner}
        cursor.execute(self._queries["append_events"], params)
        returned = cursor.fetchone()
        if returned is not None:
            self._publish(rows, returned)

    # -- reading it back (see backends.history) ------------------------------------------------------------

    def read_history(self, workflow_id: str, *, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        """The run's events after ``after_seq``, in order (none for an unknown run)."""
        params = {"workflow_id": workflow_id, "after_seq": after_seq, "limit": limit}
        with self._cursor("read a run's history") as cursor:
            cursor.execute(self._queries["read_history"], params)
            return as_events(cursor.fetchall())

    def read_events(self, *, after: str | None = None, limit: int = 500) -> EventPage:
        """Every run's events committed after position ``after``, in commit order (see EventPage)."""
        try:
            tx, event_id = feed_position(after)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        with self._cursor("read events") as cursor:
            cursor.execute(self._queries["read_feed"], {"tx": tx, "event_id": event_id, "limit": limit})
            rows = cursor.fetchall()
        if not rows:
            return EventPage((), after)
        return EventPage(tuple(as_events([row[:-2] for row in rows])), position_after(rows[-1]))

    # -- durable subscribers' cursors (see backends.cursors) ----------------------------------------------

    def claim_event_cursor(
        self, name: str, *, owner: str, lease_seconds: float, take_over_from: str | None = None
    ) -> CursorClaim:
        """Claim the cursor ``name`` for ``owner`` unless another owner holds a live lease on it."""
        params = {
            "name": name,
            "owner": owner,
            "lease_seconds": lease_seconds,
            "take_over_from": take_over_from,
        }
        with self._cursor("claim an event cursor") as cursor:
            cursor.execute(cursor_sql.CLAIM, params)
            row = cursor.fetchone()
            if row is not None:
                return CursorClaim(True, row[0], owner)
            cursor.execute(cursor_sql.HOLDER, params)
            holder = cursor.fetchone()
        return CursorClaim(False, None, None if holder is None else holder[0])

    def save_event_cursor(self, name: str, position: str | None, *, owner: str, lease_seconds: float) -> bool:
        """Store the cursor's position and renew its lease; False if ``owner`` no longer holds it."""
        params = {"name": name, "position": position, "owner": owner, "lease_seconds": lease_seconds}
        with self._cursor("save an event cursor") as cursor:
            cursor.execute(cursor_sql.SAVE, params)
            return cursor.rowcount == 1

    def release_event_cursor(self, name: str, *, owner: str) -> None:
        """Let go of the cursor, keeping its position."""
        with self._cursor("release an event cursor") as cursor:
            cursor.execute(cursor_sql.RELEASE, {"name": name, "owner": owner})

    def load_event_cursor(self, name: str) -> str | None:
        """The position saved for the cursor ``name``."""
        with self._cursor("read an event cursor") as cursor:
            cursor.execute(cursor_sql.LOAD, {"name": name})
            row = cursor.fetchone()
        return None if row is None else row[0]


def _stored_run_event(
    record: RunRecord, seq: int, kind: str, at: float, worker: str | None, data: dict[str, Any]
) -> tuple[Any, ...]:
    """An event about the whole run as its stored columns (see backends.history.numbered)."""
    return (
        record.workflow_id,
        seq,
        kind,
        None,
        None,
        at,
        worker,
        record.correlation_id,
        record.workflow_name,
        data,
    )
