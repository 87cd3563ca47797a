"""Opening a backend from a URL: ``sqlite:///path/to.db``, ``postgresql://...`` or ``memory://``."""

from __future__ import annotations

from urllib.parse import urlsplit

from conveyor.backends.base import Backend
from conveyor.backends.memory import InMemoryBackend
from conveyor.backends.sqlite import SqliteBackend
from conveyor.errors import InvalidArgumentError


def open_backend(url: str, *, read_only: bool = False) -> Backend:
    """Open the backend ``url`` names.

    ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` (``?synchronous=NORMAL`` to trade
    power-cut safety for speed), ``postgresql://user@host:5432/db`` (needs ``conveyor[postgres]``), or
    ``memory://`` (this process only).

    ``read_only=True`` opens it only to read (see :mod:`conveyor.backends.read_only`): a database that does
    not exist, or lacks conveyor's schema, is an error naming it; nothing is created or migrated, and every
    write is refused. (A new ``memory://`` backend holds nothing to protect: it is opened as it is.)
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        rest = url[len("sqlite://") :]
        path, _, query = rest.partition("?")
        if not path.startswith("/") or path == "/":
            raise InvalidArgumentError(
                f"a SQLite URL looks like sqlite:///conveyor.db or sqlite:////abs/path.db, not {url!r}"
            )
        options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        synchronous = options.get("synchronous", "FULL").upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidArgumentError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        return SqliteBackend(
            path[1:], synchronous="FULL" if synchronous == "FULL" else "NORMAL", read_only=read_only
        )
    if scheme in ("postgresql", "postgres"):
        from conveyor.backends.postgres import PostgresBackend

        return PostgresBackend(url, read_only=read_only)
    if scheme == "memory":
        return InMemoryBackend()
    raise InvalidArgumentError(
        f"unknown backend URL {url!r}: use sqlite:///path.db, postgresql://user@host/db or memory://",
        argument="backend",
    )
