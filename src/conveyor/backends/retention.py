"""Pruning finished runs: what is deleted with a run, whatever the backend.

A run's rows live in ``conveyor_runs`` and in tables keyed by its ``workflow_id``. Each backend deletes a
pruned run's rows from every table of :data:`RUN_HISTORY_TABLES` that its database has, in the same
transaction as the run itself. A new table of per-run history joins them by being named here.
"""

from __future__ import annotations

from typing import LiteralString

RUN_HISTORY_TABLES: tuple[LiteralString, ...] = ("conveyor_steps", "conveyor_signals", "conveyor_events")
"""Tables whose rows belong to a run by its ``workflow_id`` column, deleted when the run is pruned (those a
database does not have are skipped: SQLite keeps ``conveyor_steps``, PostgreSQL keeps steps in the run's
row; ``conveyor_events`` is the run's event history)."""

DEFAULT_PRUNE_BATCH = 500
"""How many runs one prune transaction deletes at most: small enough that no lock is held for long."""
MAX_PRUNE_BATCH = 10_000
"""The largest batch a caller may ask for."""
