"""The ``conveyor`` command's commands, by job: :mod:`.reading` (runs list, show, history; stats),
:mod:`.steering` (start, signal, cancel, pause, resume, retry, skip, complete, compensate) and
:mod:`.upkeep` (migrate, prune). :mod:`conveyor.cli` builds the parser and runs them.

Each command is a function ``(arguments, app) -> exit status``; each module's ``add_commands`` declares its
commands' arguments with the ``command`` function :func:`conveyor.cli.parser` hands it (which adds the
options every command takes: ``--app``, ``--backend``, ``--json``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Protocol


class CommandMaker(Protocol):
    """Adds a command to the parser, with the options every command takes; returns its own parser."""

    def __call__(
        self,
        name: str,
        help: str,
        *,
        needs_app: bool = False,
        group: Any = None,
        reads: bool = False,
        aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        """Add the command ``name`` (``reads``: it only reads, so its backend is opened read-only)."""
        ...
