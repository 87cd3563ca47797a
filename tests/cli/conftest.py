"""Fixtures of the CLI tests: a backend URL on SQLite and on PostgreSQL, and the command run in process."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import HERE, Cli


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A backend URL: a SQLite file not yet created, or a fresh PostgreSQL database with the schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    return str(request.getfixturevalue("postgres_database").url)


@pytest.fixture
def cli(
    backend_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Cli:
    """The command on ``backend_url`` (migrated first), with ``cli_shop_app`` importable; charges go through
    until ``tmp_path / "declines"`` exists."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("SHOP_DECLINES", str(tmp_path / "declines"))
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    command = Cli(backend_url, capsys)
    assert command("migrate").code == 0
    return command


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as a wide terminal prints them, whatever terminal (or none) the test session has."""
    monkeypatch.setenv("COLUMNS", "200")
