-- conveyor schema 2: claims walk ready runs in the order they take them (by when a run's timer fell due,
-- else when it was recorded) and stop at their limit, instead of sorting every ready run on each claim:
-- with a backlog of pending runs, a claim no longer costs in proportion to the backlog.
CREATE INDEX conveyor_runs_queue ON conveyor_runs ((coalesce(wake_at, created_at)))
    WHERE state IN ('pending', 'running', 'compensating');
