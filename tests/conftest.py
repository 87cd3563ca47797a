"""Fixtures for every test: PostgreSQL databases (see ``postgres_support``); skipped without a server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is not a package: put it on the path so test modules can import its helpers by name.
_TESTS = str(Path(__file__).parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from postgres_support import (  # noqa: E402 - needs the path set just above
    PostgresDatabase,
    create_database,
    create_template,
    drop_database,
    new_database_name,
    server_url,
)


@pytest.fixture(scope="session", autouse=True)
def default_backend_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs started without a backend go to the one default ($CONVEYOR_BACKEND): a file of this session's
    own, never ./conveyor.db in the checkout. Child processes the tests start inherit it."""
    import os

    path = tmp_path_factory.mktemp("default-backend") / "conveyor.db"
    previous = os.environ.get("CONVEYOR_BACKEND")
    os.environ["CONVEYOR_BACKEND"] = f"sqlite:///{path}"
    yield
    if previous is None:
        os.environ.pop("CONVEYOR_BACKEND", None)
    else:
        os.environ["CONVEYOR_BACKEND"] = previous


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's URL; skips the test (fails it when CI=true) if there is none."""
    return server_url()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """The template database, migrated once per session; dropped at the end."""
    template = create_template(postgres_server)
    yield template
    drop_database(postgres_server, template)


@pytest.fixture
def postgres_database(postgres_server: str, postgres_template: str) -> Iterator[PostgresDatabase]:
    """A fresh database with conveyor's schema, copied from the template; dropped after the test."""
    name = new_database_name()
    url = create_database(postgres_server, name, template=postgres_template)
    yield PostgresDatabase(postgres_server, name, url)
    drop_database(postgres_server, name)


@pytest.fixture
def empty_postgres_database(postgres_server: str) -> Iterator[PostgresDatabase]:
    """A fresh database without any of conveyor's tables; dropped after the test."""
    name = new_database_name()
    url = create_database(postgres_server, name)
    yield PostgresDatabase(postgres_server, name, url)
    drop_database(postgres_server, name)
