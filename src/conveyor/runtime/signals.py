"""Sending a signal to a run, from any process: the checks and the encoding, before the backend keeps it."""

from __future__ import annotations

from typing import Any

from conveyor.backends.base import Backend
from conveyor.codec import encode
from conveyor.definition.names import check_name
from conveyor.engine.checks import check_workflow_id


def send_signal_to(
    backend: Backend, workflow_id: str, name: str, payload: Any, *, now: float, max_bytes: int
) -> int:
    """Keep the signal ``name`` with ``payload`` (encoded as JSON) for the run ``workflow_id``; its id.

    The payload is refused as any stored value is (NaN, secrets, too large: an EncodingError with the
    path); an unknown run is a RunNotFoundError, a run that has ended a RunFinishedError.
    """
    workflow_id = check_workflow_id(workflow_id)
    name = check_name(name, "a signal name")
    text = encode(payload, what=f"payload of signal {name!r}", max_bytes=max_bytes)
    return backend.send_signal(workflow_id, name, text, now=now)
