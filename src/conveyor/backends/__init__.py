"""Durable state: one :class:`Backend` contract, kept in memory, in SQLite, or in PostgreSQL.

SQL lives in this package and nowhere else.
"""

from conveyor.backends.base import Backend
from conveyor.backends.memory import InMemoryBackend
from conveyor.backends.sqlite import SqliteBackend

__all__ = ["Backend", "InMemoryBackend", "SqliteBackend"]
