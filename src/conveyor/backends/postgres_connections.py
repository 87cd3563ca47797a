"""``PostgresConnections``: how a :class:`~conveyor.backends.postgres.PostgresBackend` reaches its database.

Two pools of connections (one only for claims, planned without sorts), the schema checked or migrated on
first use, a borrowed connection that the server ended found and replaced without a round trip, cursors in
autocommit mode or in one transaction, the driver's errors turned into
:class:`~conveyor.errors.BackendError` without the password, the database's clock, and closing it all.
"""

from __future__ import annotations

import math
import select
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import ClosesOnExit
from conveyor.backends.history import HistoryHooks
from conveyor.backends.postgres_sql import Migration, apply_migrations, migrations, queries
from conveyor.backends.read_only import check_versions, no_schema, refused_write
from conveyor.errors import BackendError, ConfigurationError, InvalidArgumentError

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool

    from conveyor.backends.postgres_listener import WorkListener
except ImportError as exc:  # the [postgres] extra is not installed: say so when a backend is built
    if not (exc.name or "").startswith("psycopg"):
        raise
    _DRIVER_MISSING: ImportError | None = exc
else:
    _DRIVER_MISSING = None

if TYPE_CHECKING:
    Connection = psycopg.Connection[tuple[Any, ...]]
    """A connection of the driver, whose rows are tuples."""
    Cursor = psycopg.Cursor[tuple[Any, ...]]
    """A cursor of such a connection."""

READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"
"""The sessions of a read-only backend: the server refuses every write in them."""
READ_ONLY_SQLSTATE = "25006"
"""``read_only_sql_transaction``: what the server answers a write in such a session."""
DEADLOCK_SQLSTATE = "40P01"
"""``deadlock_detected``: the server aborted the transaction to break a deadlock (it wrote nothing)."""
CLAIM_PLANNER_OPTIONS = "-c enable_sort=off"
"""Set (after any ``options`` of the URL) on the connections claims run on, which run nothing else. A claim
must walk the claim-order index and stop at its limit; on a table not yet analyzed (a new database meeting
its first backlog) the planner guesses that few runs are ready and would rather sort them all on every
claim, which costs in proportion to the backlog until autovacuum first analyzes the table."""
_CLAIM_CONNECTIONS = 2


class PostgresConnections(HistoryHooks, ClosesOnExit):
    """The connections of a :class:`~conveyor.backends.postgres.PostgresBackend` (which documents the
    arguments), and the cursors every other part of it runs its statements on."""

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_seconds: float = 10.0,
        pool_timeout_seconds: float = 30.0,
        application_name: str = "conveyor",
        read_only: bool = False,
    ) -> None:
        if _DRIVER_MISSING is not None:
            raise ConfigurationError(
                'PostgresBackend needs psycopg 3, which is not installed: pip install "conveyor[postgres]"'
            ) from _DRIVER_MISSING
        if min_connections < 0 or max_connections < max(min_connections, 1):
            raise InvalidArgumentError(
                "need 0 <= min_connections <= max_connections and max_connections >= 1, "
                f"not {min_connections} and {max_connections}"
            )
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # The driver's message quotes the URL, password and all: leave it out.
            raise InvalidArgumentError("url is not a PostgreSQL URL or conninfo string") from None
        self._url = url
        self._password = str(params.get("password") or "")
        self._where = _describe(params)
        self.read_only = bool(read_only)
        """Whether the database was opened only to read: its sessions refuse every write, and nothing
        is migrated (see :mod:`conveyor.backends.read_only`)."""
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": application_name,
            "connect_timeout": max(2, math.ceil(connect_timeout_seconds)),
        }
        url_options = str(params.get("options") or "")
        if self.read_only:
            url_options = f"{url_options} {READ_ONLY_OPTIONS}".strip()
            self._connect_kwargs["options"] = url_options
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs=self._connect_kwargs,
            min_size=min_connections,
            max_size=max_connections,
            timeout=pool_timeout_seconds,
            name="conveyor",
            open=False,
        )
        claim_options = f"{url_options} {CLAIM_PLANNER_OPTIONS}".strip()
        self._claim_pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs={**self._connect_kwargs, "options": claim_options},
            min_size=0,
            max_size=_CLAIM_CONNECTIONS,
            timeout=pool_timeout_seconds,
            name="conveyor-claims",
            open=False,
        )
        self._max_connections = max_connections
        self._listener = WorkListener(self._connect)
        self._queries = queries()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False
        if self.read_only:  # as a SQLite file is: a missing schema is found when it is opened
            self._ensure_ready()

    # -- connections ----------------------------------------------------------------------------------

    def migrate(self, *, on_migration: Callable[[Migration], None] | None = None) -> list[int]:
        """Bring the database's schema up to date; return the versions this call applied (often none).

        Runs by itself on first use. Safe when several processes start at once: each version is applied
        once, in one transaction holding an advisory lock, and recorded in ``conveyor_migrations``.
        ``on_migration`` is called with each migration as it starts (``conveyor migrate`` shows it).
        """
        if self._closed:
            raise BackendError(f"{self._where}: the backend is closed")
        if self.read_only:
            raise refused_write(self._where, "apply schema migrations")
        try:
            with self._connect() as connection:
                return apply_migrations(connection, on_migration=on_migration)
        except psycopg.Error as exc:
            raise self._error("apply schema migrations", exc) from exc

    def _check_schema(self) -> None:
        """For a read-only backend: raise unless conveyor's schema is there and up to date."""
        try:
            with self._connect() as connection:
                found = connection.execute("SELECT to_regclass('conveyor_migrations')").fetchone()
                if found is None or found[0] is None:
                    raise no_schema(self._where)
                applied = {row[0] for row in connection.execute("SELECT version FROM conveyor_migrations")}
        except psycopg.Error as exc:
            raise self._error("read the schema's version", exc) from exc
        check_versions(self._where, applied, [migration.version for migration in migrations()])

    def _connect(self) -> Connection:
        return psycopg.connect(self._url, **self._connect_kwargs)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                if self.read_only:
                    self._check_schema()
                else:
                    self.migrate()
                self._pool.open(wait=False)
                self._claim_pool.open(wait=False)
                self._ready = True

    def _borrow(self, pool: ConnectionPool[Connection]) -> Connection:
        """A pooled connection that is not known to be dead, found without a round trip to the server.

        An idle connection receives nothing unless the server ended it (a restart, a killed session):
        then the server's goodbye or the socket's end is waiting to be read. Only a connection with
        something to read is checked with a query; dead ones are handed back, which makes the pool
        discard them and open new ones, and the next is tried. (The pool's own ``check`` would cost a
        round trip on every borrow, and back off a second, then two, … per dead connection.)
        """
        failure: psycopg.Error | None = None
        for _ in range(self._max_connections + 1):
            connection = pool.getconn()
            if not _has_input(connection):
                return connection
            try:
                connection.execute("")
            except psycopg.Error as exc:
                failure = exc
                pool.putconn(connection)  # broken: the pool discards it and opens a new one
                continue
            return connection
        assert failure is not None
        raise failure

    @contextmanager
    def _cursor(self, action: str, *, claims: bool = False) -> Iterator[Cursor]:
        """A cursor on a borrowed connection, in autocommit mode: each statement is its own transaction.

        Every query of this backend is one statement, so each call costs one round trip to the server.
        ``claims`` takes the connection from the claim connections (see :data:`CLAIM_PLANNER_OPTIONS`).
        """
        self._ensure_ready()
        try:
            pool = self._claim_pool if claims else self._pool
            connection = self._borrow(pool)
            try:
                with connection.cursor() as cursor:
                    yield cursor
            finally:
                pool.putconn(connection)
        except psycopg.Error as exc:
            raise self._error(action, exc) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[Cursor]:
        """A cursor whose statements run in one transaction, committed when the block ends."""
        with self._cursor(action) as cursor, cursor.connection.transaction():
            yield cursor

    def _error(self, action: str, exc: psycopg.Error) -> BackendError:
        if exc.sqlstate == READ_ONLY_SQLSTATE:
            return refused_write(self._where, action)
        message = str(exc).strip() or type(exc).__name__
        if self._password:
            message = message.replace(self._password, "***")
        return BackendError(f"{self._where} failed to {action}: {message}")

    def now(self) -> float:
        """The database's clock (``clock_timestamp()``) in epoch seconds: the one leases and timers use."""
        with self._cursor("read the clock") as cursor:
            cursor.execute(self._queries["now"])
            row = cursor.fetchone()
        if row is None:  # pragma: no cover - a SELECT without FROM always returns its row
            raise BackendError(f"{self._where} did not report its clock")
        return float(row[0])

    # -- lifetime -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection, pooled and listening. The backend cannot be used afterwards."""
        with self._ready_lock:
            self._closed = True
            self._ready = True  # never migrate again: the pool below refuses every call
        self._listener.close()
        self._pool.close()
        self._claim_pool.close()


def _describe(params: Mapping[str, Any]) -> str:
    """Where the database is, for messages: user, host, port and database, never the password."""
    user = params.get("user") or ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    database = params.get("dbname") or user
    return f"PostgreSQL at {user + '@' if user else ''}{host}:{port}/{database}"


def _has_input(connection: Connection) -> bool:
    """Whether an idle connection has something to read (which, idle, means the server is ending it)."""
    if connection.closed or connection.broken:
        return True
    if not hasattr(select, "poll"):  # Windows: select() takes sockets there, whatever their number
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
        return bool(readable)
    poller = select.poll()  # unlike select(), not limited to descriptors below 1024
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
