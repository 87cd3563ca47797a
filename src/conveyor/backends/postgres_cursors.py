"""The SQL of durable subscribers' cursors in :class:`~conveyor.backends.postgres.PostgresBackend`
(``conveyor_event_cursors``; see :mod:`conveyor.backends.cursors`). Leases use the database's clock."""

from __future__ import annotations

_NOW = "extract(epoch FROM clock_timestamp())::float8"

CLAIM = f"""
INSERT INTO conveyor_event_cursors AS c (name, position, updated_at, owner, leased_until)
VALUES (%(name)s, NULL, {_NOW}, %(owner)s, {_NOW} + %(lease_seconds)s::float8)
ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, leased_until = EXCLUDED.leased_until
 WHERE c.owner IS NULL
    OR c.owner = EXCLUDED.owner
    OR c.owner = %(take_over_from)s::text
    OR c.leased_until IS NULL
    OR c.leased_until < {_NOW}
RETURNING position
"""
"""One statement: the cursor is created (at the feed's start) or claimed, unless a live lease of another
owner holds it; no row comes back then. The conflicting row is locked, so two claims never both win."""

HOLDER = "SELECT owner FROM conveyor_event_cursors WHERE name = %(name)s"

SAVE = f"""
UPDATE conveyor_event_cursors
   SET position = %(position)s, updated_at = {_NOW}, leased_until = {_NOW} + %(lease_seconds)s::float8
 WHERE name = %(name)s AND owner = %(owner)s
"""

RELEASE = """
UPDATE conveyor_event_cursors SET owner = NULL, leased_until = NULL
 WHERE name = %(name)s AND owner = %(owner)s
"""

LOAD = "SELECT position FROM conveyor_event_cursors WHERE name = %(name)s"
