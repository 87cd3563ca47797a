"""Fixtures of the CLI tests: a backend URL on SQLite and on PostgreSQL, and the command run in process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli import main

HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A backend URL: a SQLite file not yet created, or a fresh PostgreSQL database with the schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    return str(request.getfixturevalue("postgres_database").url)


@dataclass
class Done:
    """What one command did: its exit status and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as the one JSON document it must be."""
        return json.loads(self.out)


class Cli:
    """``conveyor ARGS --backend URL`` run in this process (``--app shop_app`` with ``app=True``)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self._capsys = capsys

    def __call__(self, *arguments: str, app: bool = False) -> Done:
        """Run the command; argparse's refusals come back as their exit status too."""
        extra = ["--app", "shop_app"] if app else []
        try:
            code = main([*arguments, *extra, "--backend", self.url])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        printed = self._capsys.readouterr()
        return Done(code, printed.out, printed.err)


@pytest.fixture
def cli(
    backend_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Cli:
    """The command on ``backend_url`` (migrated first), with ``shop_app`` importable; charges go through
    until ``tmp_path / "declines"`` exists."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("SHOP_DECLINES", str(tmp_path / "declines"))
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    command = Cli(backend_url, capsys)
    assert command("migrate").code == 0
    return command
