"""Opening a backend read-only: for commands that only read (``conveyor runs list``, ``runs show``,
``stats``), which must never create a database, migrate one, or write to it.

A read-only backend checks that conveyor's schema is there and up to date instead of creating or migrating
it, and refuses every write with one clear error, enforced by the database itself: a SQLite file opened
with ``mode=ro``, PostgreSQL sessions with ``default_transaction_read_only``. What is said when the schema
is missing or old, or a write is refused, is written here once for both.

SQLite in WAL mode makes a reader create the database's ``-wal`` and ``-shm`` files when no process has it
open; a read-only connection cannot remove them again. So a reader that found none asks SQLite to tidy
them up as it closes, as the last writer to close does: it opens the file read-write (``mode=rw``, which
never creates one) without writing anything, and closes it; SQLite checkpoints an empty log (the database
file is left as it was) and deletes both files, unless another process has them open, whose they then are.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection
from pathlib import Path
from urllib.parse import quote

from conveyor.errors import BackendError


def no_schema(where: str) -> BackendError:
    """The error of a read on a database without conveyor's tables."""
    return BackendError(f"no conveyor schema in {where} (run `conveyor migrate`)")


def outdated_schema(where: str, missing: Collection[int]) -> BackendError:
    """The error of a read on a database whose schema lacks the migrations ``missing``."""
    listed = ", ".join(str(version) for version in sorted(missing))
    return BackendError(
        f"the conveyor schema in {where} is older than this conveyor (it lacks migration "
        f"{listed}): run `conveyor migrate`"
    )


def refused_write(where: str, action: str) -> BackendError:
    """The error of a write asked of a backend opened read-only."""
    return BackendError(f"{where} is open read-only: refused to {action}")


def check_versions(where: str, applied: Collection[int], expected: Collection[int]) -> None:
    """Raise unless every migration in ``expected`` is among the ``applied`` ones."""
    missing = set(expected) - set(applied)
    if missing:
        raise outdated_schema(where, missing)


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _wal_files(path: Path) -> tuple[Path, Path]:
    return Path(f"{path}-wal"), Path(f"{path}-shm")


class SqliteReader:
    """A read-only connection to the SQLite database at ``path``, whose schema has been checked.

    Raises :class:`~conveyor.errors.BackendError` naming the file when there is none (nothing is created),
    when it is not a database, or when conveyor's schema is missing or older than ``expected_versions``.
    """

    def __init__(self, path: Path, *, timeout_seconds: float, expected_versions: Collection[int]) -> None:
        self.path = path
        if not path.is_file():
            raise BackendError(
                f"no SQLite database at {path} (a command that only reads never creates one: check the "
                "path, or run `conveyor migrate` to create it)"
            )
        self._tidy = not any(file.exists() for file in _wal_files(path))
        try:
            self.connection = sqlite3.connect(
                _uri(path, "ro"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=timeout_seconds,
                cached_statements=64,
            )
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the SQLite database at {path} to read: {exc}") from exc
        try:
            self._check_schema(expected_versions)
        except BaseException:
            self.close()
            raise

    def _check_schema(self, expected_versions: Collection[int]) -> None:
        where = f"the SQLite database at {self.path}"
        try:
            found = self.connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'conveyor_migrations'"
            ).fetchone()
            if found is None:
                raise no_schema(where)
            applied = {row[0] for row in self.connection.execute("SELECT version FROM conveyor_migrations")}
        except sqlite3.Error as exc:  # a file that is not a database says so here
            raise BackendError(f"cannot read the SQLite database at {self.path}: {exc}") from exc
        check_versions(where, applied, expected_versions)

    def close(self) -> None:
        """Close the connection; remove the ``-wal`` and ``-shm`` files reading made, if nobody uses them."""
        self.connection.close()
        if self._tidy and any(file.exists() for file in _wal_files(self.path)):
            with contextlib.suppress(sqlite3.Error):  # no right to write there: SQLite's files stay
                tidier = sqlite3.connect(_uri(self.path, "rw"), uri=True, isolation_level=None, timeout=1)
                try:
                    tidier.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the log
                finally:
                    tidier.close()
