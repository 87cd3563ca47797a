"""What every backend shares about the notes on a run: its operator log and its annotations.

Both are JSON lists kept in a column of the run (``operator_log``, ``annotations``), NULL until the first
entry. An operator action is appended with the checkpoint it comes with (a retry by hand reopens the run in
the same transaction that logs it); annotations are appended with the checkpoint of the step that recorded
them. The SQLite and memory backends append here; PostgreSQL appends in SQL (``jsonb ||``).
"""

from __future__ import annotations

import orjson

from conveyor.errors import RunNotFoundError


def unknown_run(workflow_id: str) -> RunNotFoundError:
    """The error for an operator action on a run the backend does not have."""
    return RunNotFoundError(f"no run with workflow_id {workflow_id!r}", workflow_id=workflow_id)


def appended(stored: str | None, entries: str) -> str:
    """The JSON list ``stored`` (None for none yet) with the JSON list ``entries`` appended.

    A stored value that is not a JSON list (a hand-edited row) is kept as the first entry rather than lost.
    """
    added = orjson.loads(entries)
    if stored is None:
        return entries if type(added) is list else orjson.dumps([added]).decode()
    try:
        kept = orjson.loads(stored)
    except orjson.JSONDecodeError:
        kept = [stored]
    if type(kept) is not list:
        kept = [kept]
    kept.extend(added if type(added) is list else [added])
    return orjson.dumps(kept).decode()
