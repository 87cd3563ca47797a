"""What every ``conveyor`` command shares: ``--app``, ``--backend`` and ``--json``; JSON alone on stdout;
progress on stderr only when it is a terminal; what a run recorded printed as plain text; the reference in
docs/cli.md naming every command and option."""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import HERE, Cli

from conveyor import Conveyor, FakeClock, Flow, NonRetryableError, task
from conveyor.cli import parser
from postgres_support import PostgresDatabase

ROOT = HERE.parents[1]


def commands(top: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command of the parser (``runs list`` and the other ``runs`` ones by their full names)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if any(isinstance(inner, argparse._SubParsersAction) for inner in sub._actions):
                    found.update(commands(sub, f"{prefix}{name} "))
                else:
                    found[f"{prefix}{name}"] = sub
    return found


def options(command: argparse.ArgumentParser) -> set[str]:
    """The long options a command takes."""
    return {flag for action in command._actions for flag in action.option_strings if flag.startswith("--")}


def test_every_command_takes_app_backend_and_json() -> None:
    """The route table of the CLI: each command, the ``runs`` ones included, has the three options."""
    found = commands(parser())
    expected = {
        "worker", "start", "migrate", "runs list", "runs show", "runs history", "status", "signal",
        "cancel", "pause", "resume", "unpause", "retry", "skip", "complete", "compensate", "stats", "prune",
        "serve",
    }  # fmt: skip
    assert expected <= set(found)
    for name, command in found.items():
        assert {"--app", "--backend", "--json"} <= options(command), name


def test_the_reference_names_every_command_and_option() -> None:
    """docs/cli.md has a section per command naming each of its options, so the reference stays true."""
    reference = (ROOT / "docs" / "cli.md").read_text()
    for name, command in commands(parser()).items():
        heading = f"### `conveyor {name}"
        assert heading in reference, name
        section = reference.split(heading, 1)[1].split("\n### ", 1)[0]
        for option in options(command) - {"--app", "--backend", "--json", "--help"}:
            assert f"`{option}" in section, (name, option)


def conveyor(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m conveyor.cli ARGUMENTS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", *arguments],
        env={**os.environ, "PYTHONPATH": str(HERE), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_is_all_a_real_process_prints_on_stdout(cli: Cli) -> None:
    """In a process of its own, on SQLite and PostgreSQL: start, worker, runs show, runs list, runs history
    and stats with --json print one JSON document and nothing on stderr."""
    for arguments in (
        ("start", "greet", "--input", '"ada"', "--workflow-id", "g-1", "--app", "cli_shop_app"),
        ("worker", "--until-idle", "--app", "cli_shop_app"),
        ("runs", "show", "g-1"),
        ("runs", "list"),
        ("runs", "history", "g-1"),
        ("stats",),
    ):
        done = conveyor(*arguments, "--json", "--backend", cli.url)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        json.loads(done.stdout)
    shown = json.loads(conveyor("runs", "show", "g-1", "--json", "--backend", cli.url).stdout)
    assert shown["output"] == "hello ada"
    missing = conveyor("runs", "show", "nope", "--json", "--backend", cli.url)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("conveyor: no run 'nope'")


@task
def declines(order: dict[str, object]) -> str:
    raise NonRetryableError("declined \x1b[2J\x1b]0;owned\x07 [bold]not markup[/bold]\r\nsecond line")


def test_what_a_run_recorded_is_printed_as_plain_text(tmp_path: Path) -> None:
    """An error holding a terminal's escape sequences and rich markup is shown escaped, on one line."""
    url = f"sqlite:///{tmp_path / 'escapes.db'}"
    with Conveyor(url, workflows=[Flow("bad").then(declines).build()]) as app:
        app.run("bad", {}, workflow_id="bad-1")
    for arguments in (("runs", "show", "bad-1"), ("runs", "list"), ("runs", "history", "bad-1")):
        # wide enough that no cell wraps, whatever the machine's worker names are like
        done = conveyor(*arguments, "--backend", url, env={"COLUMNS": "1000"})
        assert "\x1b" not in done.stdout
        assert "\x07" not in done.stdout
        assert "\r" not in done.stdout
        assert r"declined \x1b[2J\x1b]0;owned\x07 [bold]not markup[/bold]" in done.stdout, done.stdout


def on_a_terminal(*arguments: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal, stdout piped: exit status, stdout, the terminal's."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", *arguments],
        env={**os.environ, "PYTHONPATH": str(HERE), "TERM": "xterm-256color", "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out, seen.decode(errors="replace")


def old_runs(url: str, count: int) -> None:
    """``count`` runs that finished long ago."""
    declined = Flow("declined_long_ago").then(declines).build()
    with Conveyor(url, workflows=[declined], clock=FakeClock(1_700_000_000.0)) as app:
        for number in range(count):
            app.run(declined, {}, workflow_id=f"old-{number}-{time.monotonic_ns()}")


def test_prune_shows_its_progress_on_a_terminal_and_not_in_a_pipe(cli: Cli) -> None:
    """Prune's count of deleted runs is drawn on a terminal's stderr; piped, stderr stays empty."""
    old_runs(cli.url, 6)
    code, out, terminal = on_a_terminal(
        "prune", "--older-than", "30d", "--batch-size", "2", "--backend", cli.url
    )
    assert code == 0, terminal
    assert "pruning runs finished before" in terminal
    assert out.startswith("pruned 6 runs that finished before ")
    old_runs(cli.url, 2)
    piped = conveyor("prune", "--older-than", "30d", "--batch-size", "1", "--json", "--backend", cli.url)
    assert piped.stderr == ""
    assert json.loads(piped.stdout)["pruned"] == 2


def test_start_wait_shows_the_run_waiting_on_a_terminal(cli: Cli) -> None:
    """--wait with no worker: a live line on the terminal says the run waits, then the timeout's line."""
    code, out, terminal = on_a_terminal(
        "start", "greet", "--input", '"x"', "--workflow-id", "w-1", "--wait", "--timeout", "1",
        "--app", "cli_shop_app", "--backend", cli.url,
    )  # fmt: skip
    assert code == 3
    assert out == ""
    assert "run w-1: waiting for a worker" in terminal
    assert "run 'w-1' is still pending" in terminal


@pytest.mark.parametrize("command", [("migrate",), ("runs", "list"), ("stats",)], ids=" ".join)
def test_a_password_in_a_backend_url_is_never_printed(
    command: tuple[str, ...], postgres_database: PostgresDatabase
) -> None:
    """A wrong password: the error names the database, not the password; migrate prints it as ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(postgres_database.url)
    wrong = urlunsplit(parts._replace(netloc=f"nobody_here:s3cret-pw@{parts.hostname}:{parts.port or 5432}"))
    done = conveyor(*command, "--backend", wrong)
    assert done.returncode != 0
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.postgres
def test_migrate_names_each_migration_on_a_terminal_as_it_applies_it(
    empty_postgres_database: PostgresDatabase,
) -> None:
    """On an empty PostgreSQL database: a live line per migration on the terminal, then what was applied."""
    from conveyor.backends.postgres_sql import migrations

    code, out, terminal = on_a_terminal("migrate", "--backend", empty_postgres_database.url)
    assert code == 0, terminal
    count, newest = len(migrations()), migrations()[-1].version
    shown = [f"{found.version:04d}_{found.name}, up to {newest:04d}" for found in migrations()]
    assert any(line in terminal for line in shown), terminal  # the line is redrawn ten times a second
    listed = ", ".join(str(migration.version) for migration in migrations())
    assert out.strip().endswith(f"schema is up to date (applied {count} migrations: {listed})")
    again = conveyor("migrate", "--json", "--backend", empty_postgres_database.url)
    assert json.loads(again.stdout)["applied"] == []


def test_migrate_of_a_new_sqlite_file_lists_every_version(tmp_path: Path) -> None:
    """A new file: every version applied, listed in the JSON; the next migrate applies none."""
    from conveyor.backends.sqlite import _migrations

    url = f"sqlite:///{tmp_path / 'new.db'}"
    first = json.loads(conveyor("migrate", "--json", "--backend", url).stdout)
    assert first == {"backend": url, "applied": [version for version, _ in _migrations()]}
    assert json.loads(conveyor("migrate", "--json", "--backend", url).stdout)["applied"] == []
