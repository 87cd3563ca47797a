"""The one contract every backend keeps: where runs and their checkpoints are stored."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from conveyor.core.analytics import AnalyticsQuery, RunFigures, StepFigures
from conveyor.core.history import Event
from conveyor.core.records import Checkpoint, NewRun, RunRecord, RunSummary

if TYPE_CHECKING:
    from conveyor.backends.cursors import CursorClaim
    from conveyor.backends.history import EventPage, Listener, RowListener
    from conveyor.backends.listing import RunQuery
    from conveyor.backends.signals import Signal
    from conveyor.backends.steering import SteeringRequests


class ClosesOnExit:
    """Makes a backend a context manager: ``with SqliteBackend(path) as backend:`` closes it at the end."""

    def close(self) -> None:
        """Release what the backend holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@runtime_checkable
class Backend(Protocol):
    """Durable state for runs. ``InMemoryBackend``, ``SqliteBackend`` and ``PostgresBackend`` implement it.

    Every method is one transaction. Writes about a run are fenced by its epoch: a process that took a run
    over bumps the epoch, and a checkpoint still carrying the old epoch is refused with
    :class:`~conveyor.errors.LeaseLostError`.

    A backend may also set ``group_commit_writers`` (an int, 1 when absent): how many threads of a worker
    write batches of checkpoints at once. More than one suits a database that commits transactions in
    parallel (``PostgresBackend`` sets 3); it is not part of the protocol, so backends need not define it.
    """

    def start_run(
        self,
        run: NewRun,
        *,
        owner: str,
        now: float,
        durable: bool = True,
        lease_seconds: float | None = None,
        take_over_from: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Record ``run`` for ``owner`` to drive, or take over the run that already has its ``workflow_id``.

        Returns the run's record and whether it was created. A new run gets epoch 1, ``owner``, and with
        ``lease_seconds`` a lease ending that long after the backend's clock. An existing run that has not
        ended is taken over (its epoch and ``recoveries`` go up by one, ``owner`` and the new lease are
        recorded) when no live lease holds it, or when its owner is ``take_over_from`` (the caller found that
        owner dead). An existing run that has ended, or that another owner holds under a live lease, is
        returned unchanged (its ``owner`` and ``leased_until`` say who holds it, until when). A taken-over
        record carries the caller as its ``owner``. ``durable=False`` lets the
        backend skip flushing this one write to disk (it becomes durable with the next durable write);
        callers use it only where losing the write in a power cut loses nothing a caller was told about.
        An existing run whose rows cannot be read is returned as :func:`~conveyor.backends.rows.run_from_rows`
        reads it (failed, ``corruption`` set); if the caller could have taken it over, it is stored failed.
        """
        ...

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` in one transaction, unless the run's epoch moved on (LeaseLostError).

        A checkpoint that records a step (its ``steps`` are not empty) is progress: the same write sets the
        run's ``recoveries`` back to 0, so that only crashes in a row without progress count towards
        dead-lettering (see :meth:`claim_runs`).
        """
        ...

    def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
        """Write several runs' checkpoints in one transaction; return the ids whose write was refused.

        A refused checkpoint (its run's epoch moved on) writes nothing; the others are written.
        """
        ...

    def load_run(self, workflow_id: str) -> RunRecord | None:
        """Return the run's record with all its steps, or ``None`` if there is no such run.

        Never raises for what the rows hold: a run that cannot be read comes back failed with a
        ``CorruptRunError`` failure and ``corruption`` set (nothing is written).
        """
        ...

    def list_runs(self, query: RunQuery) -> list[RunSummary]:
        """The runs ``query`` asks for, newest first, at most ``query.limit + 1`` of them.

        The extra one tells the caller another page follows. A row that cannot be read is listed with
        its ``problem`` named, never raised.
        """
        ...

    def close(self) -> None:
        """Release connections and files. The backend cannot be used afterwards."""
        ...

    # -- work for worker processes ------------------------------------------------------------------

    def submit_run(self, run: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        """Record ``run`` as pending, for a worker to claim; durable before it returns; wakes idle workers.

        If a run with its ``workflow_id`` exists, return that run unchanged (``created`` is False).
        """
        ...

    def claim_runs(
        self,
        *,
        owner: str,
        limit: int,
        lease_seconds: float,
        max_recoveries: int,
        workflow_names: Collection[str] | None = None,
        reclaim_own: bool = False,
        exclude: Collection[str] = (),
    ) -> list[RunRecord]:
        """Claim up to ``limit`` runs that are ready, each for this caller alone, and return their records.

        Ready means: pending, or running/compensating with no owner or an expired lease, and with
        ``wake_at`` unset or due. Time is the backend's own clock. Each claimed run gets ``owner``, a lease
        ending ``lease_seconds`` from now and its epoch bumped by one; a pending run becomes running. A run
        whose lease expired (its worker died) counts one more recovery; one whose recoveries would pass
        ``max_recoveries`` is moved to ``dead_lettered`` instead of being returned. With
        ``workflow_names``, only runs of those workflows are claimed (a worker claims what it can run).
        With ``reclaim_own``, runs still leased to ``owner`` are ready too: a worker restarted under the
        same name takes back at once what its previous life held, without waiting for the leases to expire.
        A ready run whose rows cannot be read is stored ``failed`` with its ``CorruptRunError`` (held by
        nobody, never claimed again) instead of being returned.
        Runs whose ids are in ``exclude`` are never claimed, whatever their lease: a worker passes the runs
        its own drivers hold, so that it never claims a run again over a driver of its own.
        """
        ...

    def extend_leases(self, *, owner: str, leases: Mapping[str, int], lease_seconds: float) -> set[str]:
        """Renew the leases ``owner`` holds (workflow_id to epoch); return the ids whose lease was lost."""
        ...

    def release_run(
        self, *, workflow_id: str, epoch: int, wake_at: float | None, wake_for_signals: Collection[str] = ()
    ) -> bool:
        """Hand a claimed run back, claimable at ``wake_at`` (now if None); False if it was taken over.

        With ``wake_for_signals`` (a run waiting for a signal), the run is claimable now if a signal of one
        of those names is already there unconsumed: one sent while the run was being handed back is never
        slept through.
        """
        ...

    # -- signals ------------------------------------------------------------------------------------------

    def send_signal(self, workflow_id: str, name: str, payload: str, *, now: float) -> int:
        """Keep the signal ``name`` with its JSON ``payload`` for the run, wake the run, return its id.

        Durable before it returns. Raises :class:`~conveyor.errors.RunNotFoundError` for an unknown run and
        :class:`~conveyor.errors.RunFinishedError` for one that has ended. A run waiting on a timer becomes
        claimable now (it looks for the signal), and idle workers are woken as for new work.
        """
        ...

    def next_signal(self, workflow_id: str, names: Collection[str]) -> Signal | None:
        """The oldest signal of the run named one of ``names`` that no checkpoint has consumed, or None."""
        ...

    def record_checkpoint_consuming(self, checkpoint: Checkpoint, signal_id: int) -> None:
        """Write ``checkpoint`` and mark the signal ``signal_id`` consumed in the same transaction.

        Raises LeaseLostError (and writes nothing) if the run's epoch moved on or the signal was consumed.
        """
        ...

    # -- notes: the operator log and annotations ---------------------------------------------------------

    def record_operator_action(
        self, workflow_id: str, action: str, checkpoint: Checkpoint | None = None
    ) -> bool:
        """Append ``action`` (a JSON object's text) to the run's operator log, in one transaction with
        ``checkpoint`` when one is given (what the action changes, fenced by its epoch).

        Returns False, and writes nothing, if the checkpoint's epoch moved on (another process took the
        run). Raises :class:`~conveyor.errors.RunNotFoundError` for an unknown run.
        """
        ...

    def record_checkpoint_annotated(self, checkpoint: Checkpoint, annotations: str) -> None:
        """Write ``checkpoint`` and append ``annotations`` (a JSON list's text) to the run's annotations
        in the same transaction; LeaseLostError (and nothing written) if the run's epoch moved on."""
        ...

    # -- steering -----------------------------------------------------------------------------------------

    def request_cancel(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Record that the run is to be cancelled (the first reason is kept); its record, None if none.

        A run that has ended is left as it is (the caller tells the user).
        """
        ...

    def request_pause(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is paused (no worker claims it until resumed); its record, None if none."""
        ...

    def request_resume(self, workflow_id: str) -> RunRecord | None:
        """Record that the run is no longer paused (claimable at once); its record, None if none."""
        ...

    def request_compensation(self, workflow_id: str, reason: str) -> RunRecord | None:
        """Ask for the run to be undone; its record, None if none. In one transaction, a completed run goes
        ``compensating`` (error: the cancellation for ``reason``; the reason kept as a cancel's; epoch bumped;
        held by nobody and claimable at once): its completed steps' undos run, newest first, and it ends
        ``cancelled``. A run that has not ended is asked to cancel, as :meth:`request_cancel`. A run that
        ended otherwise is left as it is (the caller tells the user).
        """
        ...

    def read_steering(self, workflow_ids: Collection[str]) -> SteeringRequests:
        """Of ``workflow_ids``, the runs asked to cancel or pause: (cancel reason, paused) by id."""
        ...

    def next_wake_at(
        self, *, workflow_names: Collection[str] | None = None, exclude: Collection[str] = ()
    ) -> float | None:
        """When the next run may become ready by itself (backend clock), or None if none will.

        That is the earliest of: a timer of a run nobody holds, and the end of a lease some worker holds
        (which makes the run claimable if that worker died). ``workflow_names`` and ``exclude`` leave out
        the runs :meth:`claim_runs` would leave out with the same arguments.
        """
        ...

    def wait_for_work(self, timeout_seconds: float) -> bool:
        """Block until a run may have become ready (submitted or released) or the timeout passes.

        Returns True when woken by new work. Backends without notifications return after the timeout.
        """
        ...

    def now(self) -> float:
        """The backend's clock, in epoch seconds (the one leases and timers are judged by)."""
        ...

    # -- the event history (see conveyor.backends.history) ---------------------------------------------

    records_history: bool
    """Whether writes record events; each write records its run's events in its own transaction."""

    def add_listener(self, listener: Listener | RowListener, *, stored_rows: bool = False) -> None:
        """Call ``listener`` after each committed write in this process with the events it wrote (with
        ``stored_rows``, with their stored columns instead of Event values)."""
        ...

    def remove_listener(self, listener: Listener | RowListener) -> None:
        """Stop calling ``listener``."""
        ...

    def read_history(self, workflow_id: str, *, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        """The run's events with a ``seq`` above ``after_seq``, in order, at most ``limit`` (none for an
        unknown run)."""
        ...

    def count_unfinished_runs(self) -> dict[tuple[str, str], int]:
        """How many unfinished runs each workflow has, by status: ``queued`` (claimable now), ``waiting``
        (on a timer, a signal or a pause) and ``running`` (held by a live lease or an inline caller)."""
        ...

    def read_events(self, *, after: str | None = None, limit: int = 500) -> EventPage:
        """Every run's events committed after position ``after`` (None: from the first), in commit order,
        at most ``limit``, with the position to read on from."""
        ...

    # -- durable subscribers' cursors (see conveyor.backends.cursors) --------------------------------------

    def claim_event_cursor(
        self, name: str, *, owner: str, lease_seconds: float, take_over_from: str | None = None
    ) -> CursorClaim:
        """Claim the cursor ``name`` (created at the feed's start if new) for ``owner`` under a lease ending
        ``lease_seconds`` from now, unless another owner holds a live lease on it; ``take_over_from`` names
        an owner the caller found dead, whose lease does not count."""
        ...

    def save_event_cursor(self, name: str, position: str | None, *, owner: str, lease_seconds: float) -> bool:
        """Store the feed ``position`` of the cursor and renew its lease; False, storing nothing, if
        ``owner`` no longer holds it (another process took it over)."""
        ...

    def release_event_cursor(self, name: str, *, owner: str) -> None:
        """Let go of the cursor, keeping its position (nothing happens unless ``owner`` holds it)."""
        ...

    def load_event_cursor(self, name: str) -> str | None:
        """The position saved for the cursor ``name`` (None for none)."""

    # -- analytics and retention: finished runs (see conveyor.core.analytics) ----------------------------

    def run_figures(self, query: AnalyticsQuery) -> list[RunFigures]:
        """Each workflow's figures over the runs that finished in ``query``'s window, computed in the
        database, in no particular order; a workflow with no run finished there is left out.

        A run's ``finished_at`` is the time (``updated_at``) of the write that gave it its final state; it
        is cleared when the run leaves that state (a retry by hand, a completed run undone).
        """
        ...

    def step_figures(self, query: AnalyticsQuery) -> list[StepFigures]:
        """Each (workflow, step)'s figures over the runs that finished in ``query``'s window, computed in
        the database, in no particular order; only steps that ran at least once count."""
        ...

    def prune_finished_runs(self, *, finished_before: float, limit: int) -> int:
        """Delete, in one short transaction, up to ``limit`` finished runs whose ``finished_at`` is before
        ``finished_before``, with everything of theirs (steps, signals, history); return how many.

        A run that has not finished is never touched, nor a finished child run whose parent has not
        finished (its parent reads it). Callers repeat until it returns 0.
        """
        ...
