"""Durable subscribers' cursors: how far each has read the event feed, and which process reads it now.

A cursor is kept by name (``conveyor_event_cursors``). One process at a time reads the feed for a name: it
claims the cursor under a lease judged by the backend's clock, renews the lease each time it saves its
position, and releases it when it stops. A process that dies leaves a lease that runs out; until then the
cursor is claimed only by a caller that found its owner dead (``take_over_from``), as runs are. Two workers
that both serve a durable subscriber so deliver each event once between them (at least once after a crash),
not once each.

:class:`MemoryCursors` keeps them for :class:`~conveyor.backends.memory.InMemoryBackend`; the SQL backends
keep them in their database (``sqlite_cursors``, ``postgres_cursors``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CursorClaim:
    """What a claim of a cursor came to: whether the caller holds it now, and where it stands."""

    claimed: bool
    position: str | None
    """The feed position saved last (None: nothing read yet); meaningful only when ``claimed``."""
    owner: str | None
    """Who holds the cursor: the caller when ``claimed``, else the live owner that refused it."""


class MemoryCursors:
    """Cursors kept in this process, for the memory backend (``now`` is that backend's clock)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._cursors: dict[str, list[str | float | None]] = {}  # name -> [position, owner, leased_until]

    def claim(
        self, name: str, *, owner: str, lease_seconds: float, take_over_from: str | None = None
    ) -> CursorClaim:
        """Claim ``name`` for ``owner`` unless another owner holds a live lease on it."""
        now = self._now()
        with self._lock:
            cursor = self._cursors.setdefault(name, [None, None, None])
            position, holder, until = cursor
            free = holder is None or holder in (owner, take_over_from)
            if not free and isinstance(until, float) and until >= now:
                return CursorClaim(False, None, str(holder))
            cursor[1:] = [owner, now + lease_seconds]
            return CursorClaim(True, None if position is None else str(position), owner)

    def save(self, name: str, position: str | None, *, owner: str, lease_seconds: float) -> bool:
        """Store ``position`` and renew the lease, if ``owner`` still holds the cursor."""
        with self._lock:
            cursor = self._cursors.get(name)
            if cursor is None or cursor[1] != owner:
                return False
            cursor[:] = [position, owner, self._now() + lease_seconds]
            return True

    def release(self, name: str, *, owner: str) -> None:
        """Let go of ``name`` (nothing happens unless ``owner`` holds it)."""
        with self._lock:
            cursor = self._cursors.get(name)
            if cursor is not None and cursor[1] == owner:
                cursor[1:] = [None, None]

    def load(self, name: str) -> str | None:
        """The position saved for ``name`` (None for none)."""
        with self._lock:
            cursor = self._cursors.get(name)
        return None if cursor is None or cursor[0] is None else str(cursor[0])
