"""The commands that only read (``runs list``, ``runs show``, ``status``, ``runs history``, ``stats``) never
create a database, a table, a migration row or SQLite's ``-wal``/``-shm`` files, and never write."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from cli_support import HERE, Cli

from conveyor.cli import main
from postgres_support import PostgresDatabase

READS = (
    ("runs", "list"),
    ("runs", "show", "g-1"),
    ("status", "g-1"),
    ("runs", "history", "g-1"),
    ("stats",),
)


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: its content's hash and its modification time."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
    }


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_a_read_of_a_missing_sqlite_file_names_it_and_creates_nothing(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`conveyor status nope --backend sqlite:///typo.db`: one line naming typo.db, exit 2, no file."""
    assert main([*command, "--backend", f"sqlite:///{tmp_path / 'typo.db'}"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith(f"conveyor: no SQLite database at {tmp_path / 'typo.db'} ")
    assert printed.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_reads_leave_a_sqlite_folder_as_they_found_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run is recorded and every reading command has run, the folder holds the same bytes."""
    monkeypatch.syspath_prepend(str(HERE))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert (
        main(
            [
                "start",
                "greet",
                "--input",
                '"ada"',
                "--workflow-id",
                "g-1",
                "--app",
                "cli_shop_app",
                "--backend",
                url,
            ]
        )
        == 0
    )
    before = fingerprint(tmp_path)
    assert list(before) == ["c.db"]
    for command in READS:
        for extra in ([], ["--json"], ["--app", "cli_shop_app"]):
            assert main([*command, *extra, "--backend", url]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert fingerprint(tmp_path) == before


def test_an_apps_own_sqlite_url_is_opened_read_only_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --backend, a read uses the app's own URL, read-only: a typo in it creates no file."""
    (tmp_path / "typo_app.py").write_text(
        "from conveyor import Conveyor\n\napp = Conveyor('sqlite:///typo.db')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "list", "--app", "typo_app"]) == 2
    assert "no SQLite database at typo.db" in capsys.readouterr().err
    assert [path.name for path in tmp_path.iterdir()] == ["typo_app.py"]


@pytest.mark.postgres
@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_a_read_of_a_postgres_database_without_the_schema_says_migrate_and_creates_nothing(
    command: tuple[str, ...], empty_postgres_database: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line: 'no conveyor schema in PostgreSQL at ... (run `conveyor migrate`)', exit 2; no table."""
    import psycopg

    assert main([*command, "--backend", empty_postgres_database.url]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith("conveyor: no conveyor schema in PostgreSQL at ")
    assert printed.err.rstrip().endswith(f"/{empty_postgres_database.name} (run `conveyor migrate`)")
    assert printed.err.count("\n") == 1
    with psycopg.connect(empty_postgres_database.url) as connection:
        assert connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)


@pytest.mark.postgres
def test_reads_of_postgres_write_nothing(
    postgres_database: PostgresDatabase, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every reading command on a database with a run: its tables' rows, the run, the migrations stay."""
    import psycopg

    monkeypatch.syspath_prepend(str(HERE))
    url = postgres_database.url
    assert (
        main(
            [
                "start",
                "greet",
                "--input",
                '"ada"',
                "--workflow-id",
                "g-1",
                "--app",
                "cli_shop_app",
                "--backend",
                url,
            ]
        )
        == 0
    )

    def written() -> dict[str, object]:
        """Each table's row count, the runs' last changes, the migrations recorded."""
        with psycopg.connect(url) as connection:
            tables = [
                row[0]
                for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ]
            found: dict[str, object] = {
                table: connection.execute(f'SELECT count(*) FROM "{table}"').fetchone() for table in tables
            }
            found["updated"] = connection.execute(
                "SELECT array_agg((workflow_id, updated_at, epoch)::text ORDER BY workflow_id) "
                "FROM conveyor_runs"
            ).fetchone()
            found["migrations"] = connection.execute(
                "SELECT array_agg(version ORDER BY 1) FROM conveyor_migrations"
            ).fetchone()
        return found

    before = written()
    for command in READS:
        assert main([*command, "--json", "--backend", url]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert written() == before


def test_a_read_command_never_writes_even_given_a_writable_app(cli: Cli) -> None:
    """The read-only opening holds with --app too: the runtime the commands get refuses writes."""
    from conveyor.cli import _runtime, parser

    arguments = parser().parse_args(["runs", "list", "--app", "cli_shop_app", "--backend", cli.url])
    app = _runtime(arguments)
    try:
        assert app.read_only
        with pytest.raises(Exception, match="open read-only: refused to"):
            app.start("greet", "x", workflow_id="w-1")
    finally:
        app.close()
