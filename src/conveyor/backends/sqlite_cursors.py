"""Durable subscribers' cursors in SQLite (``conveyor_event_cursors``; see :mod:`conveyor.backends.cursors`).

Each function runs within the caller's transaction; ``now`` is the backend's clock.
"""

from __future__ import annotations

import sqlite3

from conveyor.backends.cursors import CursorClaim

_CLAIM = """
INSERT INTO conveyor_event_cursors (name, position, updated_at, owner, leased_until)
VALUES (:name, NULL, :now, :owner, :now + :lease_seconds)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, leased_until = excluded.leased_until
 WHERE conveyor_event_cursors.owner IS NULL
    OR conveyor_event_cursors.owner = excluded.owner
    OR conveyor_event_cursors.owner = :take_over_from
    OR conveyor_event_cursors.leased_until IS NULL
    OR conveyor_event_cursors.leased_until < :now
RETURNING position
"""
_HOLDER = "SELECT owner FROM conveyor_event_cursors WHERE name = ?"
_SAVE = (
    "UPDATE conveyor_event_cursors SET position = :position, updated_at = :now, "
    "leased_until = :now + :lease_seconds WHERE name = :name AND owner = :owner"
)
_RELEASE = (
    "UPDATE conveyor_event_cursors SET owner = NULL, leased_until = NULL "
    "WHERE name = :name AND owner = :owner"
)
_LOAD = "SELECT position FROM conveyor_event_cursors WHERE name = ?"


def claim_cursor(
    cursor: sqlite3.Cursor,
    name: str,
    owner: str,
    lease_seconds: float,
    take_over_from: str | None,
    now: float,
) -> CursorClaim:
    """Claim the cursor ``name`` for ``owner`` (created at the feed's start if new), unless another owner
    holds a live lease on it."""
    params = {
        "name": name,
        "owner": owner,
        "lease_seconds": lease_seconds,
        "take_over_from": take_over_from,
        "now": now,
    }
    row = cursor.execute(_CLAIM, params).fetchone()
    if row is not None:
        return CursorClaim(True, row[0], owner)
    holder = cursor.execute(_HOLDER, (name,)).fetchone()
    return CursorClaim(False, None, None if holder is None else holder[0])


def save_cursor(
    cursor: sqlite3.Cursor, name: str, position: str | None, owner: str, lease_seconds: float, now: float
) -> bool:
    """Store ``position`` and renew the lease; False if ``owner`` no longer holds the cursor."""
    params = {"name": name, "position": position, "owner": owner, "lease_seconds": lease_seconds, "now": now}
    return cursor.execute(_SAVE, params).rowcount == 1


def release_cursor(cursor: sqlite3.Cursor, name: str, owner: str) -> None:
    """Let go of the cursor (nothing happens unless ``owner`` holds it)."""
    cursor.execute(_RELEASE, {"name": name, "owner": owner})


def load_cursor(connection: sqlite3.Connection, name: str) -> str | None:
    """The position saved for ``name`` (None for none)."""
    row = connection.execute(_LOAD, (name,)).fetchone()
    return None if row is None else row[0]
