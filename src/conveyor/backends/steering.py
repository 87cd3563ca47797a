"""What every backend shares about steering runs: how a paused run is kept from being claimed.

A paused run's timer (``wake_at``) is set to :data:`PAUSED_WAKE_AT`, a time no clock reaches, so the
claim queries (unchanged, and no slower) never find it ready; ``next_wake_at`` leaves it out. Releasing a
paused run keeps it there; resuming or cancelling it clears the timer, so it is claimable at once (a
driver recomputes any retry's due time from its steps). Requests themselves are columns of the run:
``cancel_reason`` (set once), ``paused`` and ``deadline_at``.
"""

from __future__ import annotations

PAUSED_WAKE_AT = 1e15
"""The timer of a paused run: far past any clock (the year 31 million), so never due."""

SteeringRequests = dict[str, tuple[str | None, bool]]
"""What ``read_steering`` returns: for each run asked about that is steered, (cancel reason, paused)."""
