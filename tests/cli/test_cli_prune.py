"""``conveyor prune --older-than AGE``: deletes finished runs older than AGE and says how many; runs that have
not finished, and recent ones, stay; a bad age is one line on stderr and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import Conveyor, FakeClock, Flow, RunNotFoundError, SqliteBackend, task
from conveyor.backends import Backend, PostgresBackend
from conveyor.cli import main
from postgres_support import PostgresDatabase

LONG_AGO = 1_700_000_000.0  # 2023-11-14: older than 30 days whenever these tests run


@task
def greet(name: str) -> str:
    return f"hello {name}"


GREET = Flow("greet").then(greet).build()


def record_runs(backend: Backend) -> None:
    """Two runs finished long ago, one pending as old, one finished now (by the real clock)."""
    old = Conveyor(backend, workflows=[GREET], clock=FakeClock(LONG_AGO))
    old.run(GREET, "ada", workflow_id="old-1")
    old.run(GREET, "bob", workflow_id="old-2")
    old.start(GREET, "cy", workflow_id="old-pending")
    Conveyor(backend, workflows=[GREET]).run(GREET, "dee", workflow_id="recent")


def remaining(backend: Backend) -> set[str]:
    app = Conveyor(backend, workflows=[GREET])
    found = set()
    for workflow_id in ("old-1", "old-2", "old-pending", "recent"):
        try:
            app.status(workflow_id)
        except RunNotFoundError:
            continue
        found.add(workflow_id)
    return found


def test_prune_deletes_old_finished_runs_and_says_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On SQLite: the two old finished runs go; the old pending run and the recent one stay."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with SqliteBackend(tmp_path / "c.db") as backend:
        record_runs(backend)
    assert main(["prune", "--older-than", "30d", "--backend", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pruned 2 runs that finished before ")
    with SqliteBackend(tmp_path / "c.db") as backend:
        assert remaining(backend) == {"old-pending", "recent"}
    assert main(["prune", "--older-than", "30d", "--backend", url]) == 0
    assert capsys.readouterr().out.startswith("pruned 0 runs")


@pytest.mark.postgres
def test_prune_on_postgres_prints_json(
    postgres_database: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """On PostgreSQL, with --json and small batches: how many, and the cutoff, as JSON."""
    with PostgresBackend(postgres_database.url) as backend:
        record_runs(backend)
    arguments = ["prune", "--older-than", "12h", "--batch-size", "1", "--json"]
    assert main([*arguments, "--backend", postgres_database.url]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pruned"] == 2
    assert printed["finished_before"].endswith("+00:00")
    with PostgresBackend(postgres_database.url) as backend:
        assert remaining(backend) == {"old-pending", "recent"}


@pytest.mark.parametrize("age", ["30", "soon", "0d", "-3d", "30 days", "d"])
def test_an_age_that_is_not_one_is_one_line_and_exit_2(tmp_path: Path, age: str) -> None:
    """Bare numbers, words, zero and negative ages are refused before the backend is opened."""
    done = subprocess.run(
        [sys.executable, "-m", "conveyor.cli", "prune", f"--older-than={age}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--older-than" in lines[0]
    assert "30d, 12h, 90m" in lines[0]


def test_prune_without_an_age_says_it_needs_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["prune"])
    assert exited.value.code == 2
    assert "--older-than" in capsys.readouterr().err
