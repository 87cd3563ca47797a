"""What the CLI tests share: the command run in process (:class:`Cli`), what it did (:class:`Done`), and
this folder (:data:`HERE`, where ``cli_shop_app`` lives). The fixtures are in this folder's conftest.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli import main

HERE = Path(__file__).parent


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
    """``conveyor ARGS --backend URL`` run in this process (``--app cli_shop_app`` with ``app=True``)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self._capsys = capsys

    def __call__(self, *arguments: str, app: bool = False) -> Done:
        """Run the command; argparse's refusals come back as their exit status too."""
        extra = ["--app", "cli_shop_app"] if app else []
        try:
            code = main([*arguments, *extra, "--backend", self.url])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        printed = self._capsys.readouterr()
        return Done(code, printed.out, printed.err)
