"""Durable state: one :class:`Backend` contract, kept in memory, in SQLite, or in PostgreSQL.

SQL lives in this package and nowhere else.
"""

from conveyor.backends.base import Backend
from conveyor.backends.memory import InMemoryBackend
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sqlite import SqliteBackend
from conveyor.backends.urls import open_backend

__all__ = ["Backend", "InMemoryBackend", "PostgresBackend", "SqliteBackend", "open_backend"]
