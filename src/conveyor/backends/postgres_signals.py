"""The SQL of signals in :class:`~conveyor.backends.postgres.PostgresBackend` (``conveyor_signals``).

Each is run inside one transaction by the backend. Sending locks the run's row first, and a release that
waits for signals locks it too before it looks (a new statement, so a new snapshot in READ COMMITTED): so a
signal committed while the run is being handed back is always seen by one of the two, and never slept
through.
"""

from __future__ import annotations

LOCK_RUN = "SELECT state FROM conveyor_runs WHERE workflow_id = %(workflow_id)s FOR UPDATE"

INSERT_SIGNAL = """
INSERT INTO conveyor_signals (workflow_id, name, payload, sent_at)
VALUES (%(workflow_id)s, %(name)s, %(payload)s, %(now)s)
RETURNING signal_id
"""

WAKE_FOR_SIGNAL = """
UPDATE conveyor_runs SET wake_at = NULL WHERE workflow_id = %(workflow_id)s AND wake_at IS NOT NULL
"""
"""A run waiting on a timer becomes claimable at once: it looks for the signal it may wait for."""

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
