"""What every backend shares about the event history: its switch, its in-process listeners, its feed.

A backend writes a run's events in the transaction of the change they describe (see
:mod:`conveyor.core.history`). When ``records_history`` is False it writes none (the runs still run the
same: observation is a side channel). Listeners added with :meth:`HistoryHooks.add_listener` are called
in the writing process, after the transaction committed, with the events it wrote; a listener that raises
is logged and never affects the write or the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from conveyor.core.history import FINISHED_KINDS, Event, EventKind, EventRow
from conveyor.core.records import RunRecord
from conveyor.core.states import RunState

log = logging.getLogger("conveyor.history")

_NO_DATA: Mapping[str, Any] = MappingProxyType({})
Listener = Callable[[Sequence[Event]], None]
"""Called with the events one committed write made, in ``seq`` order per run."""
RowListener = Callable[[Sequence[tuple[Any, ...]]], None]
"""Called with the stored columns of those events (see :func:`numbered`): what counting needs, unbuilt."""


@dataclass(frozen=True, slots=True)
class EventPage:
    """A slice of the durable feed of every run's events, in the order they committed, and the position
    to read on from (pass it back as ``after``; store it to resume after a restart)."""

    events: tuple[Event, ...]
    position: str | None


class HistoryHooks:
    """The history switch and the in-process listeners, mixed into each backend."""

    records_history: bool = True
    """Whether writes record events (True unless turned off: ``Conveyor(history=False)``)."""
    _listeners: tuple[Listener, ...] = ()
    _row_listeners: tuple[RowListener, ...] = ()

    def add_listener(self, listener: Listener | RowListener, *, stored_rows: bool = False) -> None:
        """Call ``listener`` after each committed write in this process with the events it wrote.

        With ``stored_rows``, it is called with the events' stored columns instead (see :func:`numbered`):
        no :class:`Event` is built for it, which is what a listener that only counts (the metrics) wants.
        """
        if stored_rows:
            self._row_listeners = (*self._row_listeners, listener)  # type: ignore[arg-type]
        else:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener | RowListener) -> None:
        """Stop calling ``listener`` (nothing happens if it was not added)."""
        self._listeners = tuple(each for each in self._listeners if each is not listener)
        self._row_listeners = tuple(each for each in self._row_listeners if each is not listener)

    @property
    def wants_events(self) -> bool:
        """Whether a write must keep its events for listeners (it need not when none listens)."""
        return bool(self._listeners or self._row_listeners)

    def deliver(self, stored: Sequence[tuple[Any, ...]]) -> None:
        """Hand the events of ``stored`` (just committed, as :func:`numbered` makes them) to every listener,
        building :class:`Event` values only for listeners of events; a listener's exception is logged only."""
        if not stored:
            return
        for row_listener in self._row_listeners:
            try:
                row_listener(stored)
            except Exception:
                log.exception("an event listener failed on %d event(s); the run is not affected", len(stored))
        if not self._listeners:
            return
        events = as_events(stored)
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("an event listener failed on %d event(s); the run is not affected", len(events))


UNFINISHED_RUNS = (
    "SELECT workflow_name, CASE "
    "WHEN owner IS NOT NULL AND (lease_expires_at IS NULL OR lease_expires_at >= {now}) THEN 'running' "
    "WHEN wake_at IS NOT NULL AND wake_at > {now} THEN 'waiting' ELSE 'queued' END AS status, count(*) "
    "FROM conveyor_runs WHERE state IN ('pending', 'running', 'compensating') GROUP BY 1, 2"
)
"""How many unfinished runs of each workflow are queued (claimable now), waiting (on a timer, a signal or
a pause) or running (held by a live lease, or by the process that runs it inline): for the metrics' gauge,
read at each scrape. ``{now}`` takes the backend's placeholder for the current time (twice)."""


def with_duration(
    kind: str, data: dict[str, Any] | None, at: float, created_at: Any
) -> dict[str, Any] | None:
    """An event's data as stored: a finishing event gets the run's ``duration_seconds``."""
    if kind in FINISHED_KINDS and type(created_at) in (int, float):
        return {**(data or {}), "duration_seconds": at - created_at}
    return data or None


def data_text(data: dict[str, Any] | None) -> str | None:
    """Event data as a SQL backend stores it: JSON text, None for none."""
    return None if not data else orjson.dumps(data).decode()


def decode_data(text: Any) -> Mapping[str, Any]:
    """Stored event data back as a mapping ({} for none, or for data that does not parse); data kept as a
    dict comes back read-only, so that no listener can change what was stored."""
    if text is None:
        return _NO_DATA
    if isinstance(text, dict):
        return MappingProxyType(text)
    try:
        value = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"value": value}


def numbered(
    workflow_id: str,
    rows: Sequence[EventRow],
    last_seq: int,
    worker: str | None,
    correlation_id: str,
    workflow_name: str,
    created_at: Any,
) -> list[tuple[Any, ...]]:
    """``rows`` as the stored columns (workflow_id, seq, kind, step, attempt, at, worker, correlation_id,
    workflow_name, data), numbered so that the last is ``last_seq``; data as a dict (see data_text)."""
    seq = last_seq - len(rows)
    stored = []
    for kind, step, attempt, at, data in rows:
        seq += 1
        if kind in FINISHED_KINDS:
            data = with_duration(kind, data, at, created_at)
        stored.append(
            (workflow_id, seq, kind, step, attempt, at, worker, correlation_id, workflow_name, data)
        )
    return stored


def as_events(stored: Sequence[tuple[Any, ...]]) -> list[Event]:
    """Stored event columns (as :func:`numbered` makes them, or as read back) as :class:`Event` values."""
    new = tuple.__new__
    events = []
    for workflow_id, seq, kind, step, attempt, at, worker, correlation_id, workflow_name, data in stored:
        if data is None:
            shown = _NO_DATA
        elif type(data) is dict:  # as written here: read-only, so that no listener changes what was stored
            shown = MappingProxyType(data)
        else:
            shown = decode_data(data)
        events.append(
            new(
                Event,
                (
                    workflow_id,
                    seq,
                    kind,
                    at,
                    workflow_name or "",
                    correlation_id or "",
                    step,
                    attempt,
                    worker,
                    shown,
                ),
            )
        )
    return events


def failure_data(failure: Any) -> dict[str, Any] | None:
    """The data of an event about a run that failed with ``failure`` (a Failure, or None)."""
    if failure is None:
        return None
    return {"step": failure.step_name, "error_type": failure.error_type, "message": failure.message}


def signal_data(name: str, signal_id: int) -> dict[str, Any]:
    """The data of ``signal.received``: the signal's name and id, never its payload (it may be secret)."""
    return {"name": name, "signal_id": signal_id}


def operator_data(action: str) -> dict[str, Any]:
    """The data of ``operator.action`` from one operator-log entry (JSON text): what, by whom, why."""
    try:
        entry = orjson.loads(action)
    except orjson.JSONDecodeError:
        return {"action": "unknown"}
    if not isinstance(entry, dict):
        return {"action": "unknown"}
    return {key: entry[key] for key in ("action", "by", "reason", "step") if key in entry}


def steering_events(before: RunRecord, after: RunRecord) -> list[EventKind]:
    """The events a steering request made, judged from the run's record before and after it."""
    kinds: list[EventKind] = []
    if before.state is RunState.COMPLETED and after.state is RunState.COMPENSATING:
        return [EventKind.RUN_COMPENSATION_REQUESTED, EventKind.RUN_COMPENSATING]
    if before.cancel_reason is None and after.cancel_reason is not None:
        kinds.append(EventKind.RUN_CANCEL_REQUESTED)
    elif not before.paused and after.paused:
        kinds.append(EventKind.RUN_PAUSED)
    elif before.paused and not after.paused:
        kinds.append(EventKind.RUN_RESUMED)
    return kinds
