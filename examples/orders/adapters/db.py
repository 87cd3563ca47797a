"""The order application's connection to its database: SQLite (sqlite3) or PostgreSQL (psycopg).

The application keeps its tables in the same database as conveyor's runs, so one URL names both:
``sqlite:///orders.db`` (``sqlite:////abs/path.db``; ``?synchronous=NORMAL`` trades power-cut safety for
speed) or ``postgresql://user@host:5432/db``. SQL in the adapters is written once, with ``?`` placeholders,
in the subset both databases share (``ON CONFLICT``, ``RETURNING``, ``CHECK``); this module translates the
placeholders for psycopg. Timestamps are epoch seconds, money integer cents.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

SCHEMA = Path(__file__).with_name("schema.sql")
"""The application's tables, in SQL both databases accept."""

Row = tuple[Any, ...]
Dialect = Literal["sqlite", "postgresql"]


class Transaction(Protocol):
    """One open transaction: statements run inside it and are committed, or rolled back, together."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query; return its first row, or ``None``."""
        ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query; return every row."""
        ...


class _SqliteTransaction:
    """A :class:`Transaction` on a sqlite3 cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        return self._cursor.execute(sql, tuple(params)).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query; return its first row, or ``None``."""
        row: Row | None = self._cursor.execute(sql, tuple(params)).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query; return every row."""
        return list(self._cursor.execute(sql, tuple(params)).fetchall())


class _PostgresTransaction:
    """A :class:`Transaction` on a psycopg cursor; ``?`` placeholders become ``%s``."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        self._cursor.execute(_pg(sql), tuple(params))
        return int(self._cursor.rowcount)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query; return its first row, or ``None``."""
        self._cursor.execute(_pg(sql), tuple(params))
        row: Row | None = self._cursor.fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query; return every row."""
        self._cursor.execute(_pg(sql), tuple(params))
        return list(self._cursor.fetchall())


_PG_SQL: dict[str, str] = {}


def _pg(sql: str) -> str:
    """``sql`` with psycopg's placeholders (the adapters' SQL holds no literal ``?`` or ``%``)."""
    translated = _PG_SQL.get(sql)
    if translated is None:
        translated = _PG_SQL[sql] = sql.replace("?", "%s")
    return translated


def sqlite_path(url: str) -> tuple[str, str]:
    """The file path and ``synchronous`` setting a ``sqlite:///`` URL names (conveyor's URL rules)."""
    rest = url[len("sqlite://") :]
    path, _, query = rest.partition("?")
    if not path.startswith("/") or path == "/":
        raise ValueError(
            f"a SQLite URL looks like sqlite:///orders.db or sqlite:////abs/path.db, not {url!r}"
        )
    options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    synchronous = options.get("synchronous", "FULL").upper()
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    return path[1:], synchronous


class Database:
    """The application's database at ``url``, shared safely by the threads of one process.

    SQLite: one connection per thread, and one writer at a time within the process (writers in other
    processes wait on SQLite's lock, up to ``busy_timeout_seconds``). PostgreSQL: a pool of up to
    ``max_connections`` connections, each tagged ``application_name``.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 10,
        busy_timeout_seconds: float = 30.0,
        application_name: str = "orders",
    ) -> None:
        self.url = url
        scheme = urlsplit(url).scheme
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._pool: Any = None
        if scheme == "sqlite":
            self.dialect: Dialect = "sqlite"
            self._path, self._synchronous = sqlite_path(url)
            self._busy_timeout = busy_timeout_seconds
        elif scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
            try:
                from psycopg_pool import ConnectionPool
            except ImportError as exc:  # pragma: no cover - the [examples] extra installs it
                raise RuntimeError('PostgreSQL needs psycopg: pip install -e ".[examples]"') from exc
            self._pool = ConnectionPool(
                url,
                min_size=0,
                max_size=max_connections,
                kwargs={"application_name": application_name, "autocommit": False},
                open=True,
            )
        else:
            raise ValueError(f"the order application runs on sqlite:/// or postgresql:// URLs, not {url!r}")

    def _sqlite(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path, isolation_level=None, timeout=self._busy_timeout, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self._synchronous}")
            connection.execute("PRAGMA foreign_keys = ON")
            self._local.connection = connection
            connections = getattr(self, "_connections", [])
            connections.append(connection)
            self._connections = connections
        return connection

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Transaction]:
        """A transaction, committed when the block ends and rolled back if it raises.

        On SQLite a writing transaction takes the write lock when it begins (``BEGIN IMMEDIATE``), so a
        read-then-write inside it cannot be overtaken; ``readonly`` ones do not wait for writers.
        """
        if self._pool is not None:
            with self._pool.connection() as connection, connection.transaction():
                cursor = connection.cursor()
                if readonly:
                    cursor.execute("SET TRANSACTION READ ONLY")
                yield _PostgresTransaction(cursor)
            return
        connection = self._sqlite()
        if readonly:
            yield from _sqlite_transaction(connection, "BEGIN")
            return
        with self._write_lock:
            yield from _sqlite_transaction(connection, "BEGIN IMMEDIATE")

    def create_schema(self) -> None:
        """Create the application's tables if they do not exist (the same DDL on both databases)."""
        script = SCHEMA.read_text()
        code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
        with self.transaction() as tx:
            for statement in code.split(";"):
                if statement.strip():
                    tx.execute(statement)

    def drop_schema(self) -> None:
        """Drop the application's tables (not conveyor's): the demo starts from an empty shop."""
        with self.transaction() as tx:
            for table in TABLES:
                tx.execute(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        """Close every connection this object opened."""
        if self._pool is not None:
            self._pool.close()
        for connection in getattr(self, "_connections", []):
            connection.close()
        self._connections = []
        self._local = threading.local()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Database {self.dialect}>"


def _sqlite_transaction(connection: sqlite3.Connection, begin: str) -> Iterator[Transaction]:
    cursor = connection.cursor()
    cursor.execute(begin)
    try:
        yield _SqliteTransaction(cursor)
    except BaseException:
        connection.rollback()
        raise
    else:
        connection.commit()
    finally:
        cursor.close()


TABLES = (
    "mailbox",
    "outbox",
    "shipments",
    "gateway_refunds",
    "gateway_charges",
    "gateway_cards",
    "reservation_lines",
    "reservations",
    "order_history",
    "order_lines",
    "orders",
    "stock",
    "products",
)
"""The application's tables, dependents first (the order to drop them in)."""
