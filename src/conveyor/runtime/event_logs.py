"""One structured log line per event, and a JSON formatter for log collectors.

:class:`EventLog` is a backend listener (see :mod:`conveyor.backends.history`): each event a write of this
process commits becomes one record of the ``conveyor.events`` logger, at INFO (WARNING for failures), whose
message names the kind, the run, the step and attempt and the correlation id, and whose ``conveyor``
attribute holds the whole event. :class:`JsonFormatter` prints any record as one JSON object, with those
fields at its top level when the record is an event's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from conveyor.core.history import Event

EVENTS_LOGGER = "conveyor.events"
_WARNINGS = frozenset(
    {
        "step.failed",
        "step.timed_out",
        "undo.failed",
        "run.failed",
        "run.compensation_failed",
        "run.dead_lettered",
        "run.taken_over",
    }
)


class EventLog:
    """Logs each event as one line of the ``conveyor.events`` logger (``app.log_events()`` adds it)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(EVENTS_LOGGER)

    def __call__(self, events: Sequence[Event]) -> None:
        logger = self.logger
        for event in events:
            level = logging.WARNING if event.kind in _WARNINGS else logging.INFO
            if not logger.isEnabledFor(level):
                continue
            logger.log(level, "%s", _line(event), extra={"conveyor": event.to_dict()})


def _line(event: Event) -> str:
    parts = [event.kind, f"workflow_id={event.workflow_id}"]
    if event.step is not None:
        parts.append(f"step={event.step}")
    if event.attempt is not None:
        parts.append(f"attempt={event.attempt}")
    if event.correlation_id:
        parts.append(f"correlation_id={event.correlation_id}")
    message = event.error_message
    if message is not None:
        parts.append(f"error={message!r}")
    return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time (UTC, ISO 8601), level, logger, message, and for an
    event's record its fields (``workflow_id``, ``step``, ``attempt``, ``correlation_id``, ``kind``...)."""

    def format(self, record: logging.LogRecord) -> str:
        shown: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "conveyor", None)
        if isinstance(event, dict):
            shown.update(event)
        if record.exc_info:
            shown["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(shown, default=str).decode()


def configure_logging(*, json: bool, verbose: bool = False) -> None:
    """Log to stderr, one line per record (JSON with ``json``): the CLI's set-up (``--log-format``)."""
    handler = logging.StreamHandler()
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
