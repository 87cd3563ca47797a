"""Listing runs, newest first, a page at a time: the query every backend answers, and its rows.

A page is cut by keyset (the last run's creation time and id), never by offset, so each page costs the
same however deep it is, and a run recorded while someone pages never makes another appear twice.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from conveyor.core.records import RunSummary
from conveyor.core.states import RunState
from conveyor.errors import InvalidArgumentError

MAX_PAGE_SIZE = 1000
"""The most runs one page may hold."""

SUMMARY_COLUMNS = (
    "workflow_id, workflow_name, workflow_version, state, correlation_id, created_at, updated_at, error"
)
"""What a listed run is read from, in :func:`summary_from_row`'s order."""


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs to list: of one workflow name (and version), in some states, recorded in a time range,
    with one correlation id, older than a page's last run."""

    workflow_name: str | None = None
    workflow_version: str | None = None
    states: tuple[RunState, ...] = ()
    """Runs in any of these states; all states when empty."""
    correlation_id: str | None = None
    created_after: float | None = None
    """Only runs recorded at or after this time (epoch seconds)."""
    created_before: float | None = None
    """Only runs recorded before this time (epoch seconds)."""
    before: tuple[float, str] | None = None
    """(created_at, workflow_id) of the previous page's last run: only older runs are listed."""
    limit: int = 50

    def where(self, placeholder: str) -> tuple[str, list[Any]]:
        """The SQL condition for this query with ``placeholder`` as parameter marker, and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.workflow_name is not None:
            clauses.append(f"workflow_name = {placeholder}")
            params.append(self.workflow_name)
        if self.workflow_version is not None:
            clauses.append(f"workflow_version = {placeholder}")
            params.append(self.workflow_version)
        if self.correlation_id is not None:
            clauses.append(f"correlation_id = {placeholder}")
            params.append(self.correlation_id)
        if self.created_after is not None:
            clauses.append(f"created_at >= {placeholder}")
            params.append(self.created_after)
        if self.created_before is not None:
            clauses.append(f"created_at < {placeholder}")
            params.append(self.created_before)
        if self.states:
            clauses.append(f"state IN ({', '.join([placeholder] * len(self.states))})")
            params.extend(state.value for state in self.states)
        if self.before is not None:
            clauses.append(f"(created_at, workflow_id) < ({placeholder}, {placeholder})")
            params.extend(self.before)
        return (" AND ".join(clauses) or "TRUE"), params

    def sql(self, placeholder: str) -> tuple[str, list[Any]]:
        """The SELECT of one page: one row more than the limit, to tell whether another page follows."""
        condition, params = self.where(placeholder)
        statement = (
            f"SELECT {SUMMARY_COLUMNS} FROM conveyor_runs WHERE {condition} "
            f"ORDER BY created_at DESC, workflow_id DESC LIMIT {self.limit + 1}"
        )
        return statement, params

    def matches(self, summary: RunSummary) -> bool:
        """Whether ``summary`` belongs in this query's pages (for backends that filter in Python)."""
        if self.workflow_name is not None and summary.workflow_name != self.workflow_name:
            return False
        if self.workflow_version is not None and summary.workflow_version != self.workflow_version:
            return False
        if self.correlation_id is not None and summary.correlation_id != self.correlation_id:
            return False
        if self.created_after is not None and summary.created_at < self.created_after:
            return False
        if self.created_before is not None and summary.created_at >= self.created_before:
            return False
        if self.states and summary.state not in self.states:
            return False
        return self.before is None or (summary.created_at, summary.workflow_id) < self.before


def summary_from_row(row: Sequence[Any]) -> RunSummary:
    """A listed run from its row. A value that cannot be read is named in ``problem``, never raised."""
    workflow_id, name, version, state_text, correlation_id, created_at, updated_at, error = row
    problem = None
    state: RunState | None = None
    try:
        state = RunState(state_text)
    except ValueError:
        problem = f"unknown run state {state_text!r}"
    message = None
    if error is not None:
        try:
            message = str(orjson.loads(error)["message"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            problem = problem or "its error does not parse as a stored failure"
    return RunSummary(
        workflow_id=workflow_id,
        workflow_name=name,
        workflow_version=version,
        state=state,
        correlation_id=correlation_id,
        created_at=created_at,
        updated_at=updated_at,
        error_message=message,
        problem=problem,
    )


def page_token(summary: RunSummary) -> str:
    """The token that asks for the runs after ``summary`` (opaque to callers; URL-safe)."""
    packed = orjson.dumps([summary.created_at, summary.workflow_id])
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def read_page_token(token: str) -> tuple[float, str]:
    """The (created_at, workflow_id) a page token stands for; a clear error for anything else."""
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, workflow_id = orjson.loads(decoded)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidArgumentError(f"{token!r} is not a page token given by runs()") from None
    number = isinstance(created_at, int | float) and not isinstance(created_at, bool)
    if not number or not math.isfinite(created_at) or not isinstance(workflow_id, str):
        raise InvalidArgumentError(f"{token!r} is not a page token given by runs()")
    return float(created_at), workflow_id


def check_limit(limit: object) -> int:
    """A page size: a whole number from 1 to :data:`MAX_PAGE_SIZE`."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}, not {limit!r}")
    return limit
