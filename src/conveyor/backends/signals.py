"""What every backend shares about signals: the stored signal, and the errors for a run that cannot take one.

A signal is kept in the backend (``conveyor_signals`` in SQL) from the moment :meth:`send_signal` returns
until the checkpoint of the step that consumes it marks it consumed, in the same transaction; so a crash
between the two leaves it unconsumed, and the step's next attempt takes it again. Signals of one run are
consumed oldest first, one per wait.
"""

from __future__ import annotations

from typing import NamedTuple

from conveyor.errors import RunFinishedError, RunNotFoundError


class Signal(NamedTuple):
    """One signal sent to a run and not yet consumed: its id (in the order sent), name and JSON payload."""

    signal_id: int
    name: str
    payload: str


CHILD_SIGNAL_PREFIX = "conveyor.child:"
"""The name of the wake-up a child run leaves its parent when it ends, before the child's id."""


def child_signal_name(child_id: str) -> str:
    """The signal a child run's end leaves its parent (written by the backend, in the child's last write).

    Only a wake-up: the parent reads the child's own record for its outcome, so a signal of this name sent
    by hand wakes the parent for nothing, and changes nothing.
    """
    return CHILD_SIGNAL_PREFIX + child_id


def no_such_run(workflow_id: str) -> RunNotFoundError:
    """The error for a signal sent to a run the backend does not have."""
    return RunNotFoundError(f"no run {workflow_id!r} to send a signal to", workflow_id=workflow_id)


def run_finished(workflow_id: str, state: str) -> RunFinishedError:
    """The error for a signal sent to a run that has ended."""
    return RunFinishedError(
        f"run {workflow_id!r} has ended ({state}); it cannot take a signal",
        workflow_id=workflow_id,
        state=state,
    )
