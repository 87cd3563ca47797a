"""The commands that look after a database: ``migrate`` (create or update conveyor's schema) and ``prune``
(delete finished runs older than an age)."""

from __future__ import annotations

import argparse
import datetime as dt

from conveyor.backends.retention import DEFAULT_PRUNE_BATCH, MAX_PRUNE_BATCH
from conveyor.cli_arguments import age, whole_number
from conveyor.cli_commands import CommandMaker
from conveyor.cli_output import Output, redacted, when
from conveyor.runtime.app import Conveyor


def _where(app: Conveyor) -> str:
    """The backend, for messages: its URL without a password, else what the backend says it is."""
    url = app.backend_url
    return redacted(url) if url is not None else repr(app.backend)


def migrate(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor migrate``: apply the migrations the database lacks; say which."""
    from conveyor.backends.postgres import PostgresBackend
    from conveyor.backends.postgres_sql import Migration, migrations

    out = Output(json=arguments.json)
    where = _where(app)
    backend = app.backend
    migrate_backend = getattr(backend, "migrate", None)
    with out.progress(f"migrating {where}") as update:
        if migrate_backend is None:
            applied: list[int] = []
        elif isinstance(backend, PostgresBackend) and update is not None:
            newest = migrations()[-1].version

            def starting(migration: Migration) -> None:
                update(f"migrating {where}: {migration.version:04d}_{migration.name}, up to {newest:04d}")

            applied = backend.migrate(on_migration=starting)
        else:  # SQLite applied what the file lacked as it was opened
            applied = list(migrate_backend())
    if out.json:
        out.data({"backend": where, "applied": applied})
    elif migrate_backend is None:
        out.show(f"{where}: schema is up to date (it lives in this process only: nothing to migrate)")
    elif applied:
        listed = ", ".join(str(version) for version in applied)
        count = f"{len(applied)} migration{'s' if len(applied) > 1 else ''}"
        out.show(f"{where}: schema is up to date (applied {count}: {listed})")
    else:
        out.show(f"{where}: schema is up to date (nothing to apply)")
    return 0


def prune(arguments: argparse.Namespace, app: Conveyor) -> int:
    """``conveyor prune``: delete the runs that finished more than ``--older-than`` ago, a batch at a
    time (the count so far shown while stderr is a terminal); say how many."""
    out = Output(json=arguments.json)
    before = app.clock.now() - arguments.older_than
    shown = f"{when(before)} UTC"
    with out.progress(f"pruning runs finished before {shown}") as update:

        def progress(pruned: int) -> None:
            if update is not None:
                update(f"pruning runs finished before {shown}: {pruned:,} deleted")

        pruned = app.prune(
            older_than=arguments.older_than, batch_size=arguments.batch_size, on_progress=progress
        )
    if out.json:
        out.data({"pruned": pruned, "finished_before": dt.datetime.fromtimestamp(before, dt.UTC).isoformat()})
    else:
        out.show(f"pruned {pruned:,} {'run' if pruned == 1 else 'runs'} that finished before {shown}")
    return 0


def add_commands(command: CommandMaker) -> None:
    """Add ``prune`` (``migrate`` is declared beside ``worker`` in :func:`conveyor.cli.parser`)."""
    pruning = command(
        "prune", "delete finished runs (with their steps, signals and history) older than an age"
    )
    pruning.add_argument(
        "--older-than",
        type=age,
        required=True,
        metavar="AGE",
        help="how long ago a run must have finished: 30d, 12h, 90m, 1h30m (runs not finished are kept)",
    )
    pruning.add_argument(
        "--batch-size",
        type=whole_number(1, MAX_PRUNE_BATCH),
        default=DEFAULT_PRUNE_BATCH,
        help=f"runs deleted per transaction (default {DEFAULT_PRUNE_BATCH})",
    )
    pruning.set_defaults(run=prune)
