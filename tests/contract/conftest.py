"""Fixtures for the backend contract: one ``backend`` fixture, parametrised over every backend.

Every test in ``test_backend_contract.py`` and ``test_worker_contract.py`` runs once per entry of
:data:`BACKENDS`. To run the contract against another backend, add one entry there: a factory that builds it
in a fresh, empty state, and any marks it needs. The PostgreSQL entry gets a database of its own per test
from the ``postgres_database`` fixture (``tests/conftest.py``) and is skipped when no server answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.backends import Backend, InMemoryBackend, SqliteBackend
from conveyor.backends.postgres import PostgresBackend
from conveyor.core.records import NewRun


@dataclass(frozen=True)
class BackendKind:
    """How to build one kind of backend for a test, and the marks its tests carry."""

    factory: Callable[[pytest.FixtureRequest, Path], Backend]
    """Builds an empty backend; gets the test's request (for other fixtures) and its temporary directory."""
    marks: tuple[pytest.MarkDecorator, ...] = ()


def postgres_backend(request: pytest.FixtureRequest, tmp_path: Path) -> PostgresBackend:
    """A PostgresBackend on a fresh database of the test's own (16 connections: the thread tests use 16)."""
    database = request.getfixturevalue("postgres_database")
    return PostgresBackend(database.url, max_connections=16)


BACKENDS: dict[str, BackendKind] = {
    "memory": BackendKind(lambda request, tmp_path: InMemoryBackend()),
    "sqlite": BackendKind(lambda request, tmp_path: SqliteBackend(tmp_path / "conveyor.db")),
    "postgres": BackendKind(postgres_backend, marks=(pytest.mark.postgres,)),
}


@pytest.fixture(params=[pytest.param(name, id=name, marks=kind.marks) for name, kind in BACKENDS.items()])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty backend of each kind in turn; closed after the test."""
    instance = BACKENDS[request.param].factory(request, tmp_path)
    try:
        yield instance
    finally:
        instance.close()


NewRunFactory = Callable[..., NewRun]


@pytest.fixture
def new_run() -> NewRunFactory:
    """Build a :class:`NewRun` with JSON text input ``{"x": 1}``: ``new_run(workflow_id, steps)``."""

    def make(workflow_id: str = "run-1", steps: tuple[str, ...] = ("a", "b", "c")) -> NewRun:
        return NewRun(
            workflow_id=workflow_id,
            workflow_name="orders",
            workflow_version="1",
            input='{"x": 1}',
            correlation_id=f"corr-{workflow_id}",
            step_names=tuple(steps),
        )

    return make
