"""Fixtures for the REST API tests: a runtime on SQLite and on PostgreSQL, and a client of its API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_support import ADMIN_TOKEN, GATEWAY, READ_TOKEN, WORKFLOWS, Site, postgres_rows, sqlite_rows

from conveyor import Conveyor
from conveyor.backends import Backend, SqliteBackend
from conveyor.backends.postgres import PostgresBackend
from conveyor.web import ApiTokens, api_app


def _backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Backend, Callable[[], Any]]:
    if kind == "sqlite":
        path = tmp_path / "api.db"
        return SqliteBackend(path), lambda: sqlite_rows(str(path))
    database = request.getfixturevalue("postgres_database")
    return PostgresBackend(database.url, max_connections=8), lambda: postgres_rows(database.url)


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The API over a runtime with the test workflows, on SQLite and on PostgreSQL in turn."""
    GATEWAY["down"] = False
    backend, rows = _backend(request.param, request, tmp_path)
    app = Conveyor(backend, workflows=WORKFLOWS)
    api = api_app(app, ApiTokens(admin=[ADMIN_TOKEN], read=[READ_TOKEN]))
    try:
        with TestClient(api) as client:
            yield Site(app, client, rows)
    finally:
        app.close()
        backend.close()
        GATEWAY["down"] = False
