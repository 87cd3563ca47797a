"""What a run's status shows of its notes: the actions people did to it by hand, and its annotations.

Both are stored as JSON lists on the run (see :mod:`conveyor.backends.notes`) and read here only when a
status is asked for them; an entry that cannot be read (a hand-edited row) is shown as far as it can be,
never raised.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson


def _time(epoch: object) -> dt.datetime | None:
    if type(epoch) not in (int, float):
        return None
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)  # type: ignore[arg-type]


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _entries(stored: str | None) -> list[dict[str, Any]]:
    if stored is None:
        return []
    try:
        entries = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return []
    if type(entries) is not list:
        entries = [entries]
    return [entry if type(entry) is dict else {"content": entry} for entry in entries]


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """One thing a person did to the run by hand: what, who, why, when, and to which step (if one)."""

    action: str
    """``retry``, ``skip``, ``complete``, ``resume``, ``unpause``, ``cancel`` or ``pause``."""
    by: str
    """Who did it (the OS user when not given)."""
    reason: str
    at: dt.datetime | None
    step: str | None = None
    """The step it named: the one retried from, or the one skipped."""

    def to_dict(self) -> dict[str, Any]:
        """The action as a JSON-ready dict."""
        return {"action": self.action, "by": self.by, "reason": self.reason, "at": self.at, "step": self.step}


@dataclass(frozen=True, slots=True)
class Annotation:
    """One note a step recorded on its run (``StepContext.annotate``): its name, content, step and time."""

    name: str
    content: Any
    step: str | None
    at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The annotation as a JSON-ready dict."""
        return {"name": self.name, "content": self.content, "step": self.step, "at": self.at}


def read_operator_actions(stored: str | None) -> tuple[OperatorAction, ...]:
    """The operator log ``stored`` (a run's ``operator_log``), oldest first."""
    return tuple(
        OperatorAction(
            action=_text(entry.get("action")) or "unknown",
            by=_text(entry.get("by")) or "",
            reason=_text(entry.get("reason")) or "",
            at=_time(entry.get("at")),
            step=_text(entry.get("step")),
        )
        for entry in _entries(stored)
    )


def read_annotations(stored: str | None) -> tuple[Annotation, ...]:
    """The annotations ``stored`` (a run's ``annotations``), in the order they were committed."""
    return tuple(
        Annotation(
            name=_text(entry.get("name")) or "",
            content=entry.get("content"),
            step=_text(entry.get("step")),
            at=_time(entry.get("at")),
        )
        for entry in _entries(stored)
    )
