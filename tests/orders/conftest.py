"""Fixtures for the order application's tests: a shop on SQLite (or PostgreSQL) and conveyor's backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The order application lives in examples/ at the repository's root, which is not installed: put the root on
# the path (as a `cd` to it does for `python -m examples.orders`).
_ROOT = str(Path(__file__).parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from examples.orders.system import OrderSystem  # noqa: E402
from orders_support import make_system  # noqa: E402 - needs the path set just above

from conveyor import SqliteBackend  # noqa: E402


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database URL in the test's own folder."""
    return f"sqlite:///{tmp_path / 'shop.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on SQLite, then on PostgreSQL (skipped without a server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    database = request.getfixturevalue("postgres_database")
    return str(database.url)


@pytest.fixture
def shop(sqlite_url: str) -> Iterator[OrderSystem]:
    """A shop on SQLite; no faults unless a test sets some (runtimes built over it hand it to the steps)."""
    system = make_system(sqlite_url)
    yield system
    system.close()


@pytest.fixture
def backend(sqlite_url: str) -> Iterator[SqliteBackend]:
    """conveyor's backend, in the same SQLite file as the shop."""
    with SqliteBackend(sqlite_url.removeprefix("sqlite:///")) as opened:
        yield opened


@pytest.fixture
def any_shop(any_database_url: str) -> Iterator[OrderSystem]:
    """A shop with fresh tables on SQLite, then on PostgreSQL; closed after the test."""
    system = make_system(any_database_url)
    yield system
    system.close()
