"""The SQL of signals in :class:`~conveyor.backends.postgres.PostgresBackend` (``conveyor_signals``).

Sending updates the run's row (which locks it) in the statement that keeps the signal; a release that waits
for signals locks the row before it looks (a new statement, so a new snapshot in READ COMMITTED). So either
the release sees the signal, or the send, waiting for the release's lock, makes the released run claimable
again: a signal committed while the run is being handed back is never slept through.
"""

from __future__ import annotations

LOCK_RUN = "SELECT state FROM conveyor_runs WHERE workflow_id = %(workflow_id)s FOR UPDATE"

SEND_SIGNAL = """
WITH woken AS (
    UPDATE conveyor_runs SET wake_at = NULL
     WHERE workflow_id = %(workflow_id)s AND state IN ('pending', 'running', 'compensating')
    RETURNING workflow_id
), inserted AS (
    INSERT INTO conveyor_signals (workflow_id, name, payload, sent_at)
    SELECT workflow_id, %(name)s, %(payload)s, %(now)s FROM woken
    RETURNING signal_id
)
SELECT signal_id, pg_notify('conveyor_work', '') FROM inserted
"""
"""One statement: the run's row is locked by the update that makes it claimable now (it looks for the
signal it may wait for: a run waiting on a timer wakes once for nothing), then the signal is kept; the
notification wakes idle workers when it commits. No row comes back for a run that is unknown or ended."""

RUN_STATE = "SELECT state FROM conveyor_runs WHERE workflow_id = %(workflow_id)s"

NOTIFY_WORK = "SELECT pg_notify('conveyor_work', '')"

NEXT_SIGNAL = """
SELECT signal_id, name, payload FROM conveyor_signals
 WHERE workflow_id = %(workflow_id)s AND consumed_at IS NULL AND name = ANY (%(names)s::text[])
 ORDER BY signal_id LIMIT 1
"""

CONSUME_SIGNAL = """
UPDATE conveyor_signals SET consumed_at = %(at)s, consumed_by = %(step)s
 WHERE signal_id = %(signal_id)s AND workflow_id = %(workflow_id)s AND consumed_at IS NULL
"""

RELEASE_LOCKED = """
UPDATE conveyor_runs
   SET owner = NULL, lease_expires_at = NULL,
       wake_at = CASE WHEN EXISTS (
                     SELECT 1 FROM conveyor_signals AS s
                      WHERE s.workflow_id = %(workflow_id)s AND s.consumed_at IS NULL
                        AND s.name = ANY (%(names)s::text[]))
                 THEN NULL ELSE %(wake_at)s END
 WHERE workflow_id = %(workflow_id)s AND epoch = %(epoch)s
RETURNING wake_at IS NULL
"""
