"""The PostgreSQL test databases: a template migrated once per session, and a fresh copy for each test.

The server is named by ``CONVEYOR_TEST_POSTGRES_URL`` (any database on it; tests create their own). Without
it, or when the server does not answer, PostgreSQL tests are skipped with the reason, unless ``CI=true``:
there they fail, so a broken CI setup cannot pass by skipping. Fixtures using this live in
``tests/conftest.py``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import LiteralString, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

URL_VARIABLE = "CONVEYOR_TEST_POSTGRES_URL"
DATABASE_PREFIX = "conveyor_test_"
"""Every database the tests create is named with this prefix (and only those are ever dropped)."""


@dataclass(frozen=True)
class PostgresDatabase:
    """A database of one test's own on the test server."""

    server: str
    """The URL of the server's admin database (``CONVEYOR_TEST_POSTGRES_URL``)."""
    name: str
    url: str


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when running in CI (``CI=true``)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def server_url() -> str:
    """The test server's URL, checked to answer; skips (or fails in CI) when it cannot be used."""
    url = os.environ.get(URL_VARIABLE, "").strip()
    if not url:
        unavailable(f"{URL_VARIABLE} is not set (make test sets it when a local server answers)")
    try:
        import psycopg
    except ImportError:
        unavailable('psycopg is not installed: pip install -e ".[dev]"')
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable(f"cannot connect to {URL_VARIABLE}: {exc}")
    return url


def database_url(server: str, database: str) -> str:
    """``server``'s URL, naming ``database`` instead of its own (a URL stays a URL, for --backend)."""
    parts = urlsplit(server)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path=f"/{database}"))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(server, dbname=database)


def new_database_name() -> str:
    """A database name no other test uses."""
    return f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"


def create_database(server: str, database: str, *, template: str | None = None) -> str:
    """Create ``database`` (a copy of ``template`` if given) and return its URL."""
    if template is None:
        _admin(server, "CREATE DATABASE {}", database)
    else:
        _admin(server, "CREATE DATABASE {} TEMPLATE {}", database, template)
    return database_url(server, database)


def drop_database(server: str, database: str) -> None:
    """Drop ``database`` if it exists, closing whatever sessions are still on it."""
    _admin(server, "DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


def create_template(server: str) -> str:
    """Create a template database of this test session's own with conveyor's schema migrated; return its
    name. Each session has its own, so that test sessions running side by side (one per checkout, say)
    never drop or copy each other's template."""
    from conveyor.backends.postgres import PostgresBackend

    template = f"{DATABASE_PREFIX}template_{uuid.uuid4().hex[:12]}"
    url = create_database(server, template)
    with PostgresBackend(url, min_connections=0, max_connections=1) as backend:
        backend.migrate()
    return template


def terminate_sessions(server: str, database: str, application_name: str = "conveyor") -> int:
    """Kill every session on ``database`` tagged ``application_name``, waiting until each is gone."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            (database, application_name),
        ).fetchall()
    assert all(terminated for (terminated,) in rows), "a session outlived pg_terminate_backend's 5 s"
    return len(rows)


def _admin(server: str, statement: LiteralString, *databases: str) -> None:
    """Run ``statement`` (CREATE or DROP DATABASE) on the server, with ``databases`` as its identifiers."""
    import psycopg
    from psycopg import sql

    for database in databases:
        if not database.startswith(DATABASE_PREFIX):
            raise ValueError(f"tests only create and drop databases named {DATABASE_PREFIX}*: {database!r}")
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(*map(sql.Identifier, databases)))
