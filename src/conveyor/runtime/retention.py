"""Pruning finished runs by age (``Conveyor.prune``, ``conveyor prune --older-than 30d``).

The backend deletes a batch at a time, each batch its own short transaction, until none is left: a prune of
a million runs never holds a lock for long, and runs that have not finished are never touched.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.backends.retention import DEFAULT_PRUNE_BATCH, MAX_PRUNE_BATCH
from conveyor.definition.waits import parse_duration
from conveyor.errors import DefinitionError, InvalidArgumentError

if TYPE_CHECKING:
    from conveyor.runtime.app import Conveyor

Age = dt.timedelta | float | int | str
"""How old a finished run must be to go: a timedelta, seconds, or text such as ``"30d"``, ``"12h"``,
``"90m"``."""


def age_seconds(older_than: object) -> float:
    """Seconds in ``older_than`` (see :data:`Age`): positive and finite, else InvalidArgumentError."""
    try:
        seconds = parse_duration(older_than, what="older_than")
    except DefinitionError as exc:
        raise InvalidArgumentError(str(exc), argument="older_than") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidArgumentError(
            f"older_than must be a positive duration, such as '30d', not {older_than!r}",
            argument="older_than",
        )
    return seconds


def prune(
    app: Conveyor, older_than: object, batch_size: int, on_progress: Callable[[int], None] | None
) -> int:
    """See :meth:`conveyor.Conveyor.prune`."""
    seconds = age_seconds(older_than)
    if type(batch_size) is not int or not 1 <= batch_size <= MAX_PRUNE_BATCH:
        raise InvalidArgumentError(
            f"batch_size must be a whole number from 1 to {MAX_PRUNE_BATCH}, not {batch_size!r}",
            argument="batch_size",
        )
    before = app.clock.now() - seconds
    pruned = 0
    while deleted := app.backend.prune_finished_runs(finished_before=before, limit=batch_size):
        pruned += deleted
        if on_progress is not None:
            on_progress(pruned)
    return pruned


__all__ = ["DEFAULT_PRUNE_BATCH", "Age", "age_seconds", "prune"]
