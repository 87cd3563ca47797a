"""The SQL of :class:`~conveyor.backends.postgres.PostgresBackend`: its queries and its schema migrations.

Both live as package data in ``conveyor/backends/sql/postgres/``: ``queries.sql`` (and ``analytics.sql``,
the analytics' and retention's) hold one query per ``-- name:`` section, and each ``NNNN_description.sql``
file is one migration, applied in order of ``NNNN``.
Being conveyor's own files, never user input, their text is typed ``LiteralString`` for the driver.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, LiteralString

if TYPE_CHECKING:
    import psycopg

MIGRATION_LOCK_KEY = 0x636F6E76_65796F72  # "conveyor": the advisory lock every migrating process takes
_FOLDER = ("sql", "postgres")
_NAME_MARK = "-- name:"
_NOTED = re.compile(r"\{noted_events:(\w+)\}")
"""Where a query appends the events its source CTE carries: ``noted_events``'s body, for that source."""
_CTE = re.compile(r"\{cte:(\w+)\}")
"""Where a query includes a CTE written once, as a named section of its own (``outcome_steps``, say)."""


@dataclass(frozen=True)
class Migration:
    """One versioned schema change, from the file ``NNNN_name.sql``."""

    version: int
    name: str
    script: LiteralString


def _folder() -> resources.abc.Traversable:
    folder = resources.files("conveyor.backends")
    for part in _FOLDER:
        folder = folder / part
    return folder


_QUERY_FILES = ("queries.sql", "analytics.sql", "analytics_hours.sql")
"""The files of named queries: the runs' own, and the analytics' and retention's (over finished runs)."""


@cache
def queries() -> dict[str, LiteralString]:
    """Every query of the :data:`_QUERY_FILES` by its name, comment lines left out."""
    found: dict[str, LiteralString] = {}
    for file in _QUERY_FILES:
        name = ""
        lines: list[str] = []
        text = (_folder() / file).read_text(encoding="utf-8")
        for line in [*text.splitlines(), _NAME_MARK]:
            if line.startswith(_NAME_MARK):
                if name:
                    found[name] = "\n".join(lines).strip()
                name, lines = line.removeprefix(_NAME_MARK).strip(), []
            elif not line.lstrip().startswith("--"):
                lines.append(line)
    template = found["noted_events"]
    for name, query in found.items():
        if "{cte:" in query:
            query = found[name] = _CTE.sub(lambda use: found[use[1]], query)
        if "{noted_events:" in query:
            found[name] = _NOTED.sub(lambda use: "\n" + template.replace("{source}", use[1]) + "\n", query)
    return found


@cache
def batch_statement(count: int, *, quiet: bool = False) -> LiteralString:
    """``write_checkpoints`` for ``count`` checkpoints (its parameters: each one's ``write_checkpoint``
    parameters, one checkpoint after another); ``quiet``, ``write_checkpoints_quiet`` for checkpoints
    with no event to record."""
    found = queries()
    suffix = "_quiet" if quiet else ""
    rows = ",\n           ".join([found["checkpoint_values" + suffix]] * count)
    return found["write_checkpoints" + suffix].replace("{checkpoint_values}", rows)


@cache
def migrations() -> tuple[Migration, ...]:
    """The schema migrations, oldest first."""
    found = []
    for entry in _folder().iterdir():
        stem, _, suffix = entry.name.rpartition(".")
        version, _, name = stem.partition("_")
        if suffix == "sql" and version.isdigit():
            found.append(Migration(int(version), name, entry.read_text(encoding="utf-8")))
    return tuple(sorted(found, key=lambda migration: migration.version))


def apply_migrations(
    connection: psycopg.Connection[tuple[object, ...]],
    *,
    up_to: int | None = None,
    on_migration: Callable[[Migration], None] | None = None,
) -> list[int]:
    """Apply the migrations ``connection``'s database lacks, in one transaction; return their versions.

    The transaction holds an advisory lock, so processes starting at once apply each migration once: the
    others wait, then find it recorded in ``conveyor_migrations``. ``up_to`` stops at that version;
    ``on_migration`` is called with each migration as it starts.
    """
    applied: list[int] = []
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS conveyor_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in connection.execute("SELECT version FROM conveyor_migrations")}
        for migration in migrations():
            if migration.version in done or (up_to is not None and migration.version > up_to):
                continue
            if on_migration is not None:
                on_migration(migration)
            connection.execute(migration.script)
            connection.execute(
                "INSERT INTO conveyor_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied
