-- conveyor schema 10: the runs some process holds, by when their lease ends, so that a worker with nothing
-- to claim finds the next time a run becomes claimable without reading every waiting run: the earliest
-- timer of an unheld run comes off conveyor_runs_ready (wake_at), the earliest lease end off this index,
-- which holds only runs under a lease (a handful per worker), never the waiting ones.
CREATE INDEX IF NOT EXISTS conveyor_runs_held ON conveyor_runs (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL AND state IN ('pending', 'running', 'compensating')
