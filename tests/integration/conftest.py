"""Fixtures for the integration tests: a database worker processes share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from postgres_support import PostgresDatabase

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:  # the worker app and helpers next to these tests import by name
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database the workers share: a SQLite file, or a PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workers.db'}"
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    return database.url
