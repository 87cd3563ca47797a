"""The event history on PostgreSQL: the events a statement carries, what it returns of them, and the feed.

The statements that change a run append its events themselves (see ``queries.sql``): they take the events
as one jsonb list and number them from the run's ``event_seq``. What they return (the last number, the
run's owner, correlation id, name and creation time) is enough to rebuild the same events in this process
for its listeners, without reading them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from conveyor.backends.history import numbered
from conveyor.core.history import FINISHED_KINDS, EventRow

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
