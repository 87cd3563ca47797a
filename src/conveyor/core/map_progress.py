"""What a map step records of its elements: the ``progress`` of its step, and what can be read from it.

A map's progress is JSON text, rewritten with each element's outcome (one checkpoint each)::

    {"count": 3,                      the number of elements in the list
     "results": {"0": ..., "2": ...}, each finished element's result, by index
     "done": [2, 0],                  the finished elements, in the order they finished
     "attempts": {"0": 1, "1": 2},    attempts made at each element that ran
     "retry_at": {"1": 1733.5},       unfinished elements waiting for a retry, and when it is due
     "failed": [],                    elements that failed for good
     "undone": [], "undo_failed": [], elements whose undo ran, or gave up, in that order
     "undo_attempts": {}}             attempts made at each element's undo

Nothing here does I/O or changes what it is given: :class:`MapProgress` is read from the text, changed by
the pure functions of :mod:`conveyor.core.maps`, and written back as new text.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import orjson

from conveyor.core.records import StepRecord
from conveyor.core.states import StepState
from conveyor.errors import CorruptRunError


@dataclass(slots=True)
class MapProgress:
    """A map's progress, read (see the module's docstring for its JSON)."""

    count: int
    results: dict[int, Any] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    retry_at: dict[int, float] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    undone: list[int] = field(default_factory=list)
    undo_failed: list[int] = field(default_factory=list)
    undo_attempts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def read(cls, text: str, step_name: str = "") -> MapProgress:
        """The progress stored as ``text``; a :class:`CorruptRunError` if it is not a map's."""
        try:
            data = orjson.loads(text)
            return cls(
                count=_count(data["count"]),
                results={int(key): value for key, value in data["results"].items()},
                done=[int(index) for index in data["done"]],
                attempts={int(key): int(value) for key, value in data["attempts"].items()},
                retry_at={int(key): float(value) for key, value in data["retry_at"].items()},
                failed=[int(index) for index in data["failed"]],
                undone=[int(index) for index in data["undone"]],
                undo_failed=[int(index) for index in data["undo_failed"]],
                undo_attempts={int(key): int(value) for key, value in data["undo_attempts"].items()},
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptRunError(
                f"the progress of map step {step_name!r} is not a map's: {text[:200]!r}", step_name=step_name
            ) from exc

    def text(self) -> str:
        """The progress as the JSON text it is stored as."""
        return orjson.dumps(
            {
                "count": self.count,
                "results": {str(key): value for key, value in self.results.items()},
                "done": self.done,
                "attempts": {str(key): value for key, value in self.attempts.items()},
                "retry_at": {str(key): value for key, value in self.retry_at.items()},
                "failed": self.failed,
                "undone": self.undone,
                "undo_failed": self.undo_failed,
                "undo_attempts": {str(key): value for key, value in self.undo_attempts.items()},
            }
        ).decode()

    def unfinished(self) -> list[int]:
        """The elements that neither finished nor failed for good, in the order of the list."""
        finished = self.results.keys() | set(self.failed)
        return [index for index in range(self.count) if index not in finished]

    def to_start(self, flying: AbstractSet[int], now: float, limit: int) -> list[int]:
        """The elements to start now: unfinished, not in flight, their retry (if any) due; at most ``limit``
        in flight with those already flying. None once an element failed for good."""
        if self.failed:
            return []
        room = limit - len(flying)
        if room <= 0:
            return []
        retry_at = self.retry_at
        chosen = []
        for index in self.unfinished():
            if index not in flying and (index not in retry_at or retry_at[index] <= now):
                chosen.append(index)
                if len(chosen) == room:
                    break
        return chosen

    def next_undo(self) -> int | None:
        """The succeeded element whose undo runs next (the newest one not undone yet), or None."""
        over = set(self.undone).union(self.undo_failed)
        for index in reversed(self.done):
            if index not in over:
                return index
        return None

    def result_text(self, index: int) -> str:
        """The JSON text of element ``index``'s result."""
        return orjson.dumps(self.results[index]).decode()

    def list_text(self) -> str:
        """The JSON text of every element's result, in the order of the list (all must have finished)."""
        return orjson.dumps([self.results[index] for index in range(self.count)]).decode()

    def summary(self) -> dict[str, int]:
        """How many elements there are, and how many finished, failed for good, were undone, or could not
        be."""
        return {
            "count": self.count,
            "done": len(self.done),
            "failed": len(self.failed),
            "undone": len(self.undone),
            "undo_failed": len(self.undo_failed),
        }


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


_UNDOABLE = frozenset({StepState.PENDING, StepState.RETRYING, StepState.FAILED, StepState.COMPLETED})
"""The states of a map step whose succeeded elements are still to be undone when the run compensates (a
compensating one is undoing them)."""


def has_undos(record: StepRecord) -> bool:
    """Whether the map step ``record`` (whose spec has an undo) has succeeded elements not undone yet."""
    progress = record.progress
    if record.state not in _UNDOABLE or progress is None:
        return False
    return MapProgress.read(progress, record.name).next_undo() is not None


def reopened(record: StepRecord) -> StepRecord:
    """A map step's record for a retry by hand: a map that was not undone keeps its succeeded elements (the
    others run again, with fresh attempts); one whose elements were undone starts over."""
    if record.progress is None or record.state not in _UNDOABLE:
        return StepRecord(record.name, started_at=record.started_at, finished_at=record.finished_at)
    old = MapProgress.read(record.progress, record.name)
    kept = MapProgress(
        old.count,
        results=old.results,
        done=old.done,
        attempts={index: old.attempts[index] for index in old.done if index in old.attempts},
    )
    return StepRecord(
        record.name,
        StepState.PENDING,
        sum(kept.attempts.values()),
        started_at=record.started_at,
        finished_at=record.finished_at,
        progress=kept.text(),
    )
